"""1 % poison mixed into a stream, and dead letters replayed after a fix.

Matching runs as a process (its one-record subscriber) and reporting in-process (its
batch subscriber), both on ``enrolment.events.v1``; reporting also reads
``matching.matches.v1``. The stream carries:

* poison of several kinds (body not JSON, unknown type, body against the schema, a
  ``ce_type`` header that is not UTF-8, no CloudEvent headers at all; and, for reporting
  only, a borough outside its combined authority);
* good events with a binary and a null vendor header (must be applied, not rejected);
* events that a *bug* in this reporting instance wrongly rejects (zero attendance).

Every poison record lands in ``<topic>.dlq`` once per consumer group that read it, with
its original topic, partition, offset, key, headers and bytes; every good record is
applied. Then the fix is deployed, the wrongly rejected records are replayed with
``ops.dlq``, and the reports equal the projection of every good event; replaying them a
second time changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ops.dlq import OpsSettings, read_dead_letters, replay, select
from services.reporting.app import create_app
from services.reporting.domain.projection import InvalidEvent
from services.reporting.settings import ReportingSettings
from services.reporting.use_cases import projector as projector_module
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import AttendanceRecorded, EnrolmentAccepted
from shared.contracts.reference import CombinedAuthority
from shared.dead_letters import DLQ_HEADERS
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES, dead_letter_topic
from tests.helpers import running_app
from tests.reliability.broker import Broker
from tests.reliability.config import SEED, log, unique
from tests.reliability.database import Database
from tests.reliability.kafka_io import (
    REPORTING_CONSUMES,
    Outgoing,
    Publisher,
    caught_up,
    header,
    outgoing,
    read_topics,
)
from tests.reliability.processes import ServiceProcess, wait_until
from tests.reliability.reporting_oracle import (
    actual_aggregates,
    compare,
    expected_aggregates,
    mongo,
    reporting_stream,
    snapshot,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

EVENTS = 1500
BUG = "bug: zero attendance rejected"
BINARY_HEADERS: tuple[tuple[str, bytes | None], ...] = (
    ("x-vendor-trace", b"\xff\xfe\x00\x81"),
    ("x-vendor-empty", None),
)


def poisoned(item: Outgoing, kind: str) -> Outgoing:
    headers = dict(item.headers)
    ce_type = headers["ce_type"] or b""
    if kind == "not-json":
        return Outgoing(item.topic, item.key, b"\xff\xfe{ not json", item.headers)
    if kind == "unknown-type":
        headers["ce_type"] = ce_type.replace(b".v1", b".v9")
    elif kind == "binary-ce-type":
        headers["ce_type"] = b"\xff" + ce_type
    elif kind == "schema-invalid":
        return Outgoing(item.topic, item.key, b'{"enrolment_id": 42}', item.headers)
    elif kind == "no-headers":
        return Outgoing(item.topic, item.key, item.value, ())
    return Outgoing(item.topic, item.key, item.value, tuple(headers.items()))


POISON_KINDS = ("not-json", "unknown-type", "binary-ce-type", "schema-invalid", "no-headers")


def outside_its_authority(ce: CloudEvent[Event]) -> CloudEvent[Event]:
    """A well-formed acceptance whose borough is not in its combined authority."""
    assert isinstance(ce.data, EnrolmentAccepted)
    other = next(c for c in CombinedAuthority if c != ce.data.combined_authority)
    return CloudEvent(
        data=ce.data.model_copy(update={"combined_authority": other}), source=ce.source
    )


async def test_poison_is_dead_lettered_and_fixed_records_replay_exactly_once(
    broker: Broker, database: Database, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED + 20)
    tag = unique("poison").replace("-", "")
    matching = ServiceProcess(
        "matching", broker.bootstrap, database.url, f"cg_matching_{tag}", f"matching-{tag}", logs
    )
    matching.start()
    settings = ReportingSettings(
        kafka_bootstrap_servers=broker.bootstrap,
        mongodb_url=database.url,
        mongodb_database=f"cg_reporting_{tag}",
        consumer_group=f"reporting-{tag}",
        projection_batch_timeout_ms=100,
        log_json=False,
    )
    real_validate = projector_module.validate_event  # type: ignore[attr-defined]

    def buggy_validate(event: Event) -> None:
        if isinstance(event, AttendanceRecorded) and event.sessions_attended == 0:
            raise InvalidEvent(BUG)
        real_validate(event)

    monkeypatch.setattr(projector_module, "validate_event", buggy_validate)

    # The stream: good events, 1 % poison, 1 % good ones with binary / null headers.
    good: list[CloudEvent[Event]] = []
    items: list[Outgoing] = []
    kinds: list[str] = []
    for ce in reporting_stream(EVENTS, rng):
        item, kind = outgoing(ce), "good"
        roll = rng.random()
        if roll < 0.01:
            kind = rng.choice(POISON_KINDS)
            item = poisoned(item, kind)
        elif roll < 0.012 and isinstance(ce.data, EnrolmentAccepted):
            # Its enrolment's later events still apply (to an enrolment never accepted).
            kind = "outside-authority"
            item = outgoing(outside_its_authority(ce))
        elif roll < 0.02:
            kind = "good-binary-headers"
            item = Outgoing(item.topic, item.key, item.value, item.headers + BINARY_HEADERS)
        if kind.startswith("good"):
            good.append(ce)
        items.append(item)
        kinds.append(kind)
    buggy = [
        ce.id
        for ce in good
        if isinstance(ce.data, AttendanceRecorded) and ce.data.sessions_attended == 0
    ]
    poison = [k for k in kinds if not k.startswith("good")]
    log(
        "stream: %d records, %d poison %s, %d wrongly rejected by the bug",
        len(items),
        len(poison),
        dict(Counter(poison)),
        len(buggy),
    )
    assert poison and buggy

    async with running_app(create_app(settings)), mongo(database.url) as client:
        db = client[settings.database_name]
        await matching.wait_ready()
        async with Publisher(broker.bootstrap) as publisher:
            coordinates = await publisher.send(items)

        async def drained() -> bool:
            return await caught_up(
                broker.bootstrap, settings.group_id, REPORTING_CONSUMES
            ) and await caught_up(broker.bootstrap, matching.group, [ENROLMENT_EVENTS])

        await wait_until(drained, timeout_s=180, what="both groups to drain", alive=[matching])

        # 1. Every poison record is in its DLQ once per group that read it, untouched.
        letters = await read_topics(
            broker.bootstrap,
            [dead_letter_topic(ENROLMENT_EVENTS), dead_letter_topic(MATCHING_MATCHES)],
        )
        by_origin: dict[tuple[str, int, int, str], Any] = {}
        for letter in letters:
            origin = (
                header(letter, "dlq_original_topic") or "",
                int(header(letter, "dlq_original_partition") or -1),
                int(header(letter, "dlq_original_offset") or -1),
                header(letter, "dlq_consumer_group") or "",
            )
            assert origin not in by_origin, f"dead-lettered twice: {origin}"
            by_origin[origin] = letter
        expected: set[tuple[str, int, int, str]] = set()
        for item, kind, (topic, partition, offset) in zip(items, kinds, coordinates, strict=True):
            groups: list[str] = []
            if kind in POISON_KINDS:
                groups = [settings.group_id] + (
                    [matching.group] if topic == ENROLMENT_EVENTS else []
                )
            elif kind == "outside-authority":
                groups = [settings.group_id]
            for group in groups:
                expected.add((topic, partition, offset, group))
                letter = by_origin.get((topic, partition, offset, group))
                assert letter is not None, (
                    f"{kind} at {topic}[{partition}]@{offset} not in DLQ for {group}"
                )
                assert letter.key == item.key and letter.value == item.value, kind
                kept = [(k, v) for k, v in letter.headers if k not in DLQ_HEADERS]
                assert kept == list(item.headers), f"{kind}: headers changed"
                assert header(letter, "dlq_error_kind") == "poison"
        bug_letters = {
            o for o, letter in by_origin.items() if BUG in (header(letter, "dlq_error") or "")
        }
        assert len(bug_letters) == len(buggy)
        assert set(by_origin) == expected | bug_letters, "unexpected dead letters"

        # 2. Every good record applied, except what the bug rejected.
        rejected = set(buggy)
        comparison = compare(
            expected_aggregates(ce for ce in good if ce.id not in rejected),
            await actual_aggregates(db),
        )
        assert comparison.exact, comparison

        # 3. The fix is deployed; the wrongly rejected records are replayed.
        monkeypatch.setattr(projector_module, "validate_event", real_validate)
        ops = OpsSettings(kafka_bootstrap_servers=broker.bootstrap)
        dead = await read_dead_letters(ops, ENROLMENT_EVENTS)
        chosen = select(dead, [], take_all=True, error_contains=BUG)
        assert len(chosen) == len(buggy)
        plan = await replay(ops, ENROLMENT_EVENTS, chosen, dry_run=False)
        assert len(plan) == len(buggy)
        await wait_until(drained, timeout_s=120, what="the replay to be consumed", alive=[matching])
        comparison = compare(expected_aggregates(good), await actual_aggregates(db))
        log("after replay: %s", comparison)
        assert comparison.exact, comparison
        once = await snapshot(db)

        # 4. Replayed again: nothing changes (the ce_ids are known).
        await replay(ops, ENROLMENT_EVENTS, chosen, dry_run=False)
        await wait_until(drained, timeout_s=120, what="the second replay", alive=[matching])
        assert await snapshot(db) == once
        applied = await db["g1_applied_events"].count_documents({})
        assert applied == len({ce.id for ce in good}), applied

    figures = {
        "records": len(items),
        "poison": len(poison),
        "poison_kinds": dict(Counter(poison)),
        "dead_letters": len(letters),
        "wrongly_rejected_replayed": len(buggy),
        "good_applied": len(good),
        "lost": comparison.missing,
        "duplicated": comparison.extra,
    }
    log("FIGURES %s", json.dumps({"test": "poison + replay", **figures}))
    matching.stop()
    await asyncio.sleep(0)
