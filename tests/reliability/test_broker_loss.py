"""Durable truth when the broker forgets: the whole stack stopped and started again,
everything killed at once (services, broker and database), the broker killed alone, a
topic deleted and re-created. The embedded broker keeps its log in memory, so each of
these gives the consumers a *new* log whose offsets start again at 0 (as a re-created
topic or a migrated cluster does on real Kafka).

After each fault providers send again what the broker lost (their raw submissions on
``enrolment.inbound.v1``: the platform never held them; intake de-duplicates), the
producing services re-publish from their outboxes what they had sent into the lost log,
and every figure must be exact: each submission stored once in enrolment, counted once
in the reports (``started``), each opt-in once in matching's pool, each match counted
once. The expected figures come from what was submitted and from the services' own
databases, not from the topics (which lose their history with the broker).

Trials: ``COMMONGROUND_RELIABILITY_LOSS_TRIALS`` (default 10) kill -9 of everything at
once, each at a random point of its own chunk of ``COMMONGROUND_RELIABILITY_LOSS_CHUNK``
submissions (default 60). Figures go to artifacts/reliability.jsonl.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from devstack.processes import ChildProcess
from shared.kafka import ensure_topics
from shared.topics import ENROLMENT_EVENTS, all_topics
from tests.reliability.database import Database
from tests.reliability.harness import (
    FIGURES_FILE,
    SEED,
    Broker,
    log,
    reporting_counts,
    wait_until,
)
from tests.reliability.pipeline import Pipeline, Submission

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

LOSS_TRIALS = max(1, int(os.environ.get("COMMONGROUND_RELIABILITY_LOSS_TRIALS", "10")))
CHUNK = max(10, int(os.environ.get("COMMONGROUND_RELIABILITY_LOSS_CHUNK", "60")))
SETTLE_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Figures:
    submitted: int
    stored: int
    reported: int
    reported_enrolments: int
    opt_ins: int
    in_pool: int
    matches: int
    reported_proposed: int

    @property
    def lost(self) -> int:
        return (
            max(0, self.submitted - self.stored)
            + max(0, self.submitted - self.reported)
            + max(0, self.opt_ins - self.in_pool)
            + max(0, self.matches - self.reported_proposed)
        )

    @property
    def duplicated(self) -> int:
        return (
            max(0, self.stored - self.submitted)
            + max(0, self.reported - self.submitted)
            + max(0, self.reported_enrolments - self.submitted)
            + max(0, self.in_pool - self.opt_ins)
            + max(0, self.reported_proposed - self.matches)
        )

    @property
    def exact(self) -> bool:
        return (
            self.lost == 0 and self.duplicated == 0 and self.reported_enrolments == self.submitted
        )


async def figures(p: Pipeline) -> Figures:
    async with p.mongo() as client:
        enrolment = client[p.database("enrolment")]
        matching = client[p.database("matching")]
        counts = await reporting_counts(client[p.database("reporting")])
        return Figures(
            submitted=len(p.submissions),
            stored=await enrolment["enrolments"].count_documents({}),
            reported=counts.get("outcomes.started", 0),
            reported_enrolments=counts["enrolments"],
            opt_ins=sum(1 for s in p.submissions if s.opts_in),
            in_pool=await matching["participants"].count_documents({}),
            matches=await matching["matches"].count_documents({}),
            reported_proposed=counts.get("matching.proposed", 0),
        )


async def settle(p: Pipeline, what: str) -> Figures:
    """Wait until every figure is exact, then, once the pipeline has drained, check
    that it stayed exact (a double count arriving late would show)."""
    started = time.monotonic()
    last: list[Figures] = []

    async def exact() -> bool:
        last[:] = [await figures(p)]
        return last[0].exact

    try:
        await wait_until(
            exact,
            timeout_s=SETTLE_TIMEOUT_S,
            what=f"exact figures ({what})",
            interval_s=1.0,
            alive=[s for s in p.services.values()],
        )
    except AssertionError as exc:
        raise AssertionError(f"{what}: {last[0] if last else None}\n{exc}") from None
    await p.wait_drained(SETTLE_TIMEOUT_S)
    final = await figures(p)
    log("%s: %s (settled in %.1fs)", what, final, time.monotonic() - started)
    assert final.exact, f"{what}: not exactly once after draining: {final}"
    return final


def kill_9(child: ChildProcess | None) -> None:
    if child is None or child.popen is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.popen.pid, signal.SIGKILL)
    child.popen.wait(10)


async def restart_broker(broker: Broker) -> None:
    """The same broker, port and log file, started again: an empty log (memory storage),
    so the contract topics are created again, as the local stack does."""
    await asyncio.to_thread(broker.kafka.start)
    await ensure_topics(broker.bootstrap, all_topics(), partitions=4)


async def resend(p: Pipeline, submissions: Sequence[Submission]) -> None:
    """What a provider does when the broker lost records it had acknowledged: send them
    again (intake de-duplicates what it already stored)."""
    async with p.publisher() as publisher:
        await publisher.send([s.record() for s in submissions])


async def stream_until_killed(p: Pipeline, submissions: Sequence[Submission]) -> None:
    """Send ``submissions`` in small chunks; ends quietly when the broker goes away."""
    with contextlib.suppress(Exception):
        async with p.publisher() as publisher:
            for start in range(0, len(submissions), 10):
                await publisher.send([s.record() for s in submissions[start : start + 10]])


async def stored_count(p: Pipeline) -> int:
    async with p.mongo() as client:
        return await client[p.database("enrolment")]["enrolments"].estimated_document_count()


def record(test: str, **figures: Any) -> None:
    import json
    from datetime import UTC, datetime

    entry = {"test": test, "at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": SEED}
    entry.update(figures)
    log("FIGURES %s", json.dumps(entry, default=str))
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps(entry, default=str) + "\n")


@pytest.fixture(scope="module")
async def pipeline(broker: Broker, database: Database, logs: Path) -> AsyncIterator[Pipeline]:
    p = Pipeline(broker, database.url, logs)
    await p.prepare()
    await p.start()
    await p.register_volunteers(per_borough=4, capacity=10)
    try:
        yield p
    finally:
        p.stop()


async def test_whole_stack_stopped_and_started_again_then_new_events(
    pipeline: Pipeline, broker: Broker, database: Database
) -> None:
    p, rng = pipeline, random.Random(SEED + 100)
    first = p.new_submissions(120, rng)
    await resend(p, first)
    await settle(p, "before the restart")

    # Ctrl-C of the whole stack: services, broker (its log is gone), database.
    p.stop()
    await asyncio.to_thread(broker.kafka.stop)
    await asyncio.to_thread(database.stop)
    await asyncio.to_thread(database.start)
    await restart_broker(broker)
    await p.start()

    second = p.new_submissions(90, rng)
    await resend(p, second)
    final = await settle(p, "after a whole-stack restart")
    record(
        "whole-stack restart",
        submitted=final.submitted,
        lost=final.lost,
        duplicated=final.duplicated,
        figures=final,
    )


async def test_kill_9_of_everything_at_once_at_random_points(
    pipeline: Pipeline, broker: Broker, database: Database
) -> None:
    p, rng = pipeline, random.Random(SEED + 200)
    recoveries: list[float] = []
    for trial in range(LOSS_TRIALS):
        chunk = p.new_submissions(CHUNK, rng)
        before = await stored_count(p)
        point = rng.randint(0, CHUNK - 1)  # how many of the chunk are stored at the kill
        sender = asyncio.create_task(stream_until_killed(p, chunk))

        async def reached(
            before: int = before, point: int = point, sender: asyncio.Task[None] = sender
        ) -> bool:
            return await stored_count(p) - before >= point or sender.done()

        await wait_until(reached, timeout_s=120, what=f"trial {trial}: {point} stored")
        # Everything at once: services, broker and database.
        for svc in p.services.values():
            kill_9(svc.process)
        kill_9(broker.kafka.process)
        kill_9(database.process)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        began = time.monotonic()
        await asyncio.to_thread(database.start)
        await restart_broker(broker)
        await p.start()
        recoveries.append(time.monotonic() - began)
        log(
            "trial %d: killed everything at %d/%d stored; up again in %.1fs",
            trial,
            point,
            CHUNK,
            recoveries[-1],
        )
        await resend(p, chunk)
    final = await settle(p, f"{LOSS_TRIALS} kill -9 trials of everything")
    record(
        "kill -9 of everything at once",
        trials=LOSS_TRIALS,
        submitted=final.submitted,
        lost=final.lost,
        duplicated=final.duplicated,
        restart_s_max=round(max(recoveries), 1),
        restart_s_mean=round(sum(recoveries) / len(recoveries), 1),
        figures=final,
    )


async def test_broker_killed_alone_mid_stream(pipeline: Pipeline, broker: Broker) -> None:
    p, rng = pipeline, random.Random(SEED + 300)
    chunk = p.new_submissions(150, rng)
    before = await stored_count(p)
    sender = asyncio.create_task(stream_until_killed(p, chunk))

    async def halfway() -> bool:
        return await stored_count(p) - before >= 50 or sender.done()

    await wait_until(halfway, timeout_s=120, what="a third of the stream stored")
    kill_9(broker.kafka.process)
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    began = time.monotonic()
    await restart_broker(broker)
    await p.wait_ready()
    await resend(p, chunk)
    final = await settle(p, "broker killed alone")
    record(
        "kill -9 of the broker alone",
        submitted=final.submitted,
        lost=final.lost,
        duplicated=final.duplicated,
        recovery_s=round(time.monotonic() - began, 1),
        figures=final,
    )


async def test_a_topic_deleted_and_recreated_mid_stream(pipeline: Pipeline, broker: Broker) -> None:
    p, rng = pipeline, random.Random(SEED + 400)
    chunk = p.new_submissions(150, rng)
    before = await stored_count(p)
    sender = asyncio.create_task(resend(p, chunk))

    async def partway() -> bool:
        return await stored_count(p) - before >= 40

    await wait_until(partway, timeout_s=120, what="part of the stream stored")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([ENROLMENT_EVENTS])

        async def gone() -> bool:
            return ENROLMENT_EVENTS not in await admin.list_topics()

        await wait_until(gone, timeout_s=30, what="the topic deleted")
    finally:
        await admin.close()
    await ensure_topics(broker.bootstrap, [ENROLMENT_EVENTS], partitions=4)
    await sender
    final = await settle(p, "topic deleted and re-created")
    record(
        "topic deleted and re-created",
        submitted=final.submitted,
        lost=final.lost,
        duplicated=final.duplicated,
        figures=final,
    )
