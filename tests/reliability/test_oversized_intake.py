"""Oversized records and keys on ``enrolment.inbound.v1`` among normal ones.

The embedded broker accepts records far above Kafka's default 1 MiB, and so would a
cluster configured for large messages; the platform's own producers stay at the 1 MiB
default (``<SERVICE>_KAFKA_MAX_REQUEST_BYTES``). Each record must end in exactly one
place: stored (normal submissions), refused on ``enrolment.rejected.v1`` (an unknown
provider), or dead-lettered (too large to be a submission, or a key / ``ce_id`` too
large to echo in a refusal), bounded with digests when it cannot be kept whole. Nothing
else in a batch is duplicated or stalled, and the intake group commits past everything.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from shared.contracts.enrolment import SubmissionRejected
from shared.dead_letters import (
    H_KEY_LENGTH,
    H_KEY_SHA256,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    H_TRUNCATED,
    H_VALUE_LENGTH,
    H_VALUE_SHA256,
)
from shared.record_signing import sign_record
from shared.topics import ENROLMENT_INBOUND, ENROLMENT_REJECTED, dead_letter_topic
from tests.reliability.broker import Broker
from tests.reliability.config import log
from tests.reliability.database import Database
from tests.reliability.kafka_io import committed, header, read_topics
from tests.reliability.pipeline import Pipeline, submission
from tests.reliability.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

MIB = 1024 * 1024
DLQ = dead_letter_topic(ENROLMENT_INBOUND)


@dataclass(frozen=True)
class Odd:
    """One oversized record and where it must end."""

    name: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    truncated: bool = False  # too large to dead-letter whole under 1 MiB
    # A key no provider has: refused as unauthenticated (signature check, before the
    # body is read) or dead-lettered; either way once, and bounded.
    odd_key: bool = False


def padded_submission(ukprn: str, rng: random.Random, size: int) -> bytes:
    """A well-formed submission padded with an extra field to ``size`` bytes."""
    doc = submission(ukprn, rng).doc
    doc["notes"] = ""
    base = len(json.dumps(doc).encode())
    doc["notes"] = "x" * max(0, size - base)
    return json.dumps(doc).encode()


@pytest.fixture
async def pipeline(broker: Broker, database: Database, logs: Path) -> AsyncIterator[Pipeline]:
    pipe = Pipeline(broker, database.url, logs, services=("enrolment",))
    await pipe.prepare()
    await pipe.start()
    try:
        yield pipe
    finally:
        pipe.stop()


async def test_oversized_records_each_end_in_exactly_one_place(pipeline: Pipeline) -> None:
    rng = random.Random(1212)
    ukprn = pipeline.providers[0]
    api_key = pipeline.provider_keys[ukprn]
    small = json.dumps(submission(ukprn, rng).doc).encode()
    odd = [
        Odd("value-100k-json", ukprn.encode(), padded_submission(ukprn, rng, 100 * 1024)),
        Odd(
            "value-1.5m-json",
            ukprn.encode(),
            padded_submission(ukprn, rng, 3 * MIB // 2),
            truncated=True,
        ),
        Odd("value-1.5m-garbage", ukprn.encode(), rng.randbytes(3 * MIB // 2), truncated=True),
        Odd("value-5m-garbage", ukprn.encode(), b"\xff" * (5 * MIB), truncated=True),
        Odd("key-700k", b"k" * 700_000, small, odd_key=True),
        Odd(
            "key-700k-value-700k",
            b"k" * 700_000,
            b"{" + b" " * 700_000,
            truncated=True,
            odd_key=True,
        ),
        Odd("ce_id-300k", ukprn.encode(), small, (("ce_id", b"i" * 300_000),)),
    ]
    normal = pipeline.new_submissions(120, rng)
    unknown = [submission("19999999", rng) for _ in range(10)]  # refused: no such provider

    # A producer configured for large requests (the broker takes them); normal records
    # go before, between and after the oversized ones, in the same partitions.
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.broker.bootstrap, acks="all", max_request_size=16 * MIB
    )
    await producer.start()
    where: dict[str, tuple[int, int]] = {}  # name -> (partition, offset)
    last: dict[int, int] = {}
    try:
        plain = [s.record() for s in normal] + [s.record() for s in unknown]
        rng.shuffle(plain)
        chunks = [plain[i :: len(odd) + 1] for i in range(len(odd) + 1)]
        for index, chunk in enumerate(chunks):
            for item in chunk:
                meta = await producer.send_and_wait(
                    ENROLMENT_INBOUND, item.value, key=item.key, headers=list(item.headers)
                )
                where[f"plain-{meta.partition}-{meta.offset}"] = (meta.partition, meta.offset)
                last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
            if index < len(odd):
                o = odd[index]
                # Signed by the provider, as a real provider's records are.
                signature = sign_record(api_key, ENROLMENT_INBOUND, o.key or b"", o.value)
                meta = await producer.send_and_wait(
                    ENROLMENT_INBOUND, o.value, key=o.key, headers=[*o.headers, *signature]
                )
                where[o.name] = (meta.partition, meta.offset)
                last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
    finally:
        await producer.stop()
    log("produced %d records; oversized at %s", len(where), {o.name: where[o.name] for o in odd})

    bootstrap = pipeline.broker.bootstrap
    group = pipeline["enrolment"].group

    async def caught_up() -> bool:
        # Lag 0 against what we produced (not the broker's reported end offsets, which
        # the embedded broker can under-report by a batch).
        done = await committed(bootstrap, group, [ENROLMENT_INBOUND])
        return all(
            done.get(TopicPartition(ENROLMENT_INBOUND, p), 0) >= end + 1 for p, end in last.items()
        )

    await wait_until(
        caught_up,
        timeout_s=240,
        what="intake to commit past every record",
        interval_s=1.0,
        alive=[pipeline["enrolment"]],
    )
    refs = [s.doc["submission_ref"] for s in normal]

    async def stored_all() -> bool:
        async with pipeline.mongo() as client:
            db = client[pipeline.database("enrolment")]
            n = await db["enrolments"].count_documents({"submission.submission_ref": {"$in": refs}})
            return n == len(refs)

    await wait_until(stored_all, timeout_s=60, what="every normal submission stored")

    # Refusals are published by the outbox: wait for one per unknown-provider record.
    async def refused_all() -> bool:
        got = await read_topics(bootstrap, [ENROLMENT_REJECTED])
        return len(got) >= len(unknown)

    await wait_until(refused_all, timeout_s=60, what="the refusals to be published")
    letters = await read_topics(bootstrap, [DLQ])
    rejected = await read_topics(bootstrap, [ENROLMENT_REJECTED])
    dead = Counter(
        (int(header(r, H_PARTITION) or -1), int(header(r, H_OFFSET) or -1))
        for r in letters
        if header(r, H_TOPIC) == ENROLMENT_INBOUND
    )
    sources: Counter[tuple[int, int]] = Counter()
    for r in rejected:
        event = SubmissionRejected.model_validate_json(r.value or b"")
        sources[(event.source.partition, event.source.offset)] += 1
        # Every refusal is small whatever the record was (nothing of it is echoed raw).
        assert len(r.value or b"") + len(r.key or b"") < 64 * 1024

    # Each oversized record ends in exactly one place: the DLQ (or, for a key no
    # provider has, possibly a refusal), never both, never twice.
    odd_at = {where[o.name]: o for o in odd}
    places: dict[str, str] = {}
    for o in odd:
        at = where[o.name]
        assert dead[at] + sources[at] == 1, (o.name, dead[at], sources[at])
        places[o.name] = "dead-lettered" if dead[at] else "refused"
        assert o.odd_key or dead[at] == 1, o.name
    # Nothing else is dead-lettered; refusals are one per unknown-provider record.
    assert set(dead) <= set(odd_at), dead
    assert all(n == 1 for n in sources.values()), sources
    assert len(set(sources) - set(odd_at)) == len(unknown)

    for r in letters:
        o = odd_at[(int(header(r, H_PARTITION) or -1), int(header(r, H_OFFSET) or -1))]
        assert len(r.value or b"") + len(r.key or b"") < MIB, o.name
        if o.truncated:
            assert header(r, H_TRUNCATED), o.name
            assert header(r, H_VALUE_SHA256) == hashlib.sha256(o.value).hexdigest(), o.name
            assert header(r, H_VALUE_LENGTH) == str(len(o.value)), o.name
            assert header(r, H_KEY_SHA256) == hashlib.sha256(o.key or b"").hexdigest(), o.name
            assert header(r, H_KEY_LENGTH) == str(len(o.key or b"")), o.name
            assert o.value.startswith(r.value or b""), o.name  # a prefix, as much as fits
        else:
            assert header(r, H_TRUNCATED) is None, o.name
            assert r.value == o.value and r.key == o.key, o.name

    # Normal submissions: each stored exactly once.
    async with pipeline.mongo() as client:
        db = client[pipeline.database("enrolment")]
        found = db["enrolments"].find(
            {"submission.submission_ref": {"$in": refs}}, {"submission.submission_ref": 1}
        )
        per_ref = Counter([d["submission"]["submission_ref"] async for d in found])
    assert all(per_ref[r] == 1 for r in refs) and len(per_ref) == len(refs)

    # Still caught up (nothing was rewound to be redone).
    assert await caught_up()
    log(
        "oversized intake: %d normal stored once, %d refused once, %d dead-lettered once "
        "(%d bounded)",
        len(per_ref),
        len(sources),
        sum(dead.values()),
        sum(1 for r in letters if header(r, H_TRUNCATED)),
    )
    for o in odd:
        log(
            "  %s (value %d B, key %d B) at %s: %s",
            o.name,
            len(o.value),
            len(o.key or b""),
            where[o.name],
            places[o.name],
        )
