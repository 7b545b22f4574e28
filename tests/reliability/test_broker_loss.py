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

Trials: ``COMMONGROUND_RELIABILITY_LOSS_TRIALS`` (default 6) kill -9 of everything at
once, each at a random point of its own chunk of ``COMMONGROUND_RELIABILITY_LOSS_CHUNK``
submissions (default 60). Figures go to artifacts/reliability.jsonl.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import ensure_topics
from shared.topics import ENROLMENT_EVENTS
from tests.reliability.broker import Broker
from tests.reliability.config import SEED, log
from tests.reliability.database import Database
from tests.reliability.faults import (
    kill_9,
    kill_everything_mid_chunk,
    record,
    resend,
    restart_broker,
    settle,
    stored_count,
    stream_until_killed,
)
from tests.reliability.pipeline import Pipeline
from tests.reliability.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

LOSS_TRIALS = max(1, int(os.environ.get("COMMONGROUND_RELIABILITY_LOSS_TRIALS", "6")))
CHUNK = max(10, int(os.environ.get("COMMONGROUND_RELIABILITY_LOSS_CHUNK", "60")))


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
        point = rng.randint(0, CHUNK - 1)  # how many of the chunk are stored at the kill
        recoveries.append(
            await kill_everything_mid_chunk(p, broker, database, chunk, point, timeout_s=120)
        )
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
