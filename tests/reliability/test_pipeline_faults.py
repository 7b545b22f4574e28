"""The whole platform as processes under faults: kill -9, SIGTERM, redelivery of
everything, consumers joining and leaving. After each fault the pipeline drains and
every submission is counted: one enrolment, one ``EnrolmentAccepted`` (one ``ce_id``),
one opt-in in matching's pool, each match published once and counted once, reports
equal to an in-memory projection of the distinct events, no dead letter.

The tests share one pipeline (consumer-group joins cost seconds on the embedded broker)
and run in order; each adds its own stream. Sizes: ``COMMONGROUND_RELIABILITY_EVENTS``
submissions for the kill -9 stream (default 600, which keeps the whole suite under 20
minutes on 2 cores; the issue's figure is 20000, run with the variable set), in which
each of the three services is killed ``COMMONGROUND_RELIABILITY_TRIALS`` times (default
4) at random points of its own progress. Figures go to artifacts/reliability.jsonl.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.broker import Broker
from tests.reliability.config import EVENTS, SEED, TRIALS, log
from tests.reliability.database import Database
from tests.reliability.figures import record_figures
from tests.reliability.kafka_io import read_topics, reset_group
from tests.reliability.pipeline import CONSUMES, SERVICES, Pipeline, Verdict
from tests.reliability.processes import ServiceProcess, wait_until
from tests.reliability.reporting_oracle import snapshot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(max(1800, 900 + int(EVENTS * 0.5))),
]

ROUNDS_OF_SIGTERM = 2
STREAM_S = 5.0


@pytest.fixture(scope="module")
async def pipeline(broker: Broker, database: Database, logs: Path) -> AsyncIterator[Pipeline]:
    p = Pipeline(broker, database.url, logs)
    await p.prepare()
    await p.start()
    # Places for most of the opt-ins (~30 % of submissions): the pool stays bounded, as
    # it is in production (the optimiser weighs the whole waiting pool on every run).
    await p.register_volunteers(per_borough=max(10, EVENTS // 150), capacity=10)
    log("pipeline up (seed %d): %s", SEED, ", ".join(f"{n}:{s.url}" for n, s in p.services.items()))
    try:
        yield p
    finally:
        p.stop()


async def check(p: Pipeline, what: str, *, timeout_s: float = 300) -> Verdict:
    await p.wait_drained(timeout_s)
    verdict = await p.verify()
    log("%s:\n%s", what, verdict.summary())
    assert verdict.exact, f"{what}: not exactly once\n{verdict.summary()}"
    return verdict


async def done_count(p: Pipeline, name: str) -> int:
    """What a service has durably done so far: enrolments stored (enrolment), learners
    in the pool (matching), enrolments in the read models (reporting)."""
    async with p.mongo() as client:
        db = client[p.database(name)]
        if name == "enrolment":
            return await db["enrolments"].estimated_document_count()
        if name == "matching":
            return await db["participants"].estimated_document_count()
        control = await db["projection_control"].find_one({"_id": "active"})
        generation = int(control["generation"]) if control else 1
        return await db[f"g{generation}_enrolments"].estimated_document_count()


def drain_timeout(submissions: int) -> float:
    # ~0.1 s per submission on two cores at the default size; the embedded database
    # (one Python process serving all three services) slows as it grows.
    return 300 + submissions * 0.3


async def test_kill_9_of_each_service_at_random_points(pipeline: Pipeline) -> None:
    """The whole stream is offered at once; each service is killed at TRIALS random
    points of *its own* progress through it (one point in each of TRIALS equal slices
    of 5 to 95 %), and restarted at once."""
    p, rng = pipeline, random.Random(SEED)
    submissions = p.new_submissions(EVENTS, rng)
    totals = {
        "enrolment": len(submissions),
        "matching": sum(1 for s in submissions if s.opts_in),
        "reporting": len(submissions),
    }
    before = {name: await done_count(p, name) for name in SERVICES}
    kills: dict[str, list[float]] = {name: [] for name in SERVICES}

    def points() -> list[float]:
        width = 0.9 / TRIALS
        return [0.05 + width * (k + rng.random()) for k in range(TRIALS)]

    async def chaos(name: str, at: list[float]) -> None:
        svc = p[name]

        async def share() -> float:
            return (await done_count(p, name) - before[name]) / max(1, totals[name])

        for fraction in at:

            async def reached(fraction: float = fraction) -> bool:
                return await share() >= fraction

            await wait_until(
                reached,
                timeout_s=drain_timeout(len(submissions)),
                what=f"{name} to reach {fraction:.0%} of the stream",
                interval_s=0.1,
                alive=[svc],
            )
            kills[name].append(round(100 * await share(), 1))
            svc.kill()
            svc.start()
            await svc.wait_ready()
        log("%s killed at %s %% of its stream", name, kills[name])

    async with p.publisher() as publisher:
        stream = publisher.paced([s.record() for s in submissions], rate_per_s=400)
        await asyncio.gather(stream, *(chaos(name, points()) for name in SERVICES))

    verdict = await check(
        p, f"after {TRIALS} kill -9 per service", timeout_s=drain_timeout(len(submissions))
    )
    record_figures("kill -9", verdict, trials=TRIALS, submissions=len(p.submissions), kills=kills)
    assert all(len(k) == TRIALS for k in kills.values())


async def test_sigterm_mid_stream_finishes_or_abandons_cleanly(pipeline: Pipeline) -> None:
    p, rng = pipeline, random.Random(SEED + 1)
    segment = max(50, EVENTS // 6)
    exits: dict[str, list[int | None]] = {name: [] for name in SERVICES}

    async def stop(name: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        svc = p[name]
        code = await asyncio.to_thread(svc.terminate, 30.0)
        exits[name].append(code)
        svc.start()

    async with p.publisher() as publisher:
        for _ in range(ROUNDS_OF_SIGTERM):
            records = [s.record() for s in p.new_submissions(segment, rng)]
            stream = asyncio.create_task(publisher.paced(records, rate_per_s=segment / STREAM_S))
            await asyncio.gather(*(stop(n, rng.uniform(0.5, STREAM_S)) for n in SERVICES))
            await stream
            await p.wait_ready()
    for name, codes in exits.items():
        # uvicorn re-raises the signal once shut down: -15 is a clean, graceful exit.
        assert all(code in (0, -15) for code in codes), f"{name} exit codes {codes}"
        text = p[name].log_text()
        assert text.count("service stopping") >= ROUNDS_OF_SIGTERM, name
    verdict = await check(p, f"after {ROUNDS_OF_SIGTERM} SIGTERM rounds per service")
    record_figures("SIGTERM", verdict, trials=ROUNDS_OF_SIGTERM, submissions=len(p.submissions))


async def test_everything_delivered_again_changes_nothing(pipeline: Pipeline) -> None:
    """The reporting and enrolment groups are reset to offset 0 (as an operator would
    with kafka-consumer-groups --reset-offsets --to-earliest) and read everything again.
    (Matching's redelivery is the kill -9 test's: its records since the last commit come
    again after each crash; re-reading its whole topic would only cost time.)"""
    p = pipeline
    before = await p.verify()
    assert before.exact
    async with p.mongo() as client:
        reports_before = await snapshot(client[p.database("reporting")])
    records_before = len(await read_topics(p.broker.bootstrap, ["enrolment.events.v1"]))

    again = ("enrolment", "reporting")
    for name in again:
        await asyncio.to_thread(p[name].terminate, 30.0)
        await reset_group(p.broker.bootstrap, p[name].group, CONSUMES[name])
    await p.start(again)

    after = await check(p, "after every group re-read everything")
    async with p.mongo() as client:
        reports_after = await snapshot(client[p.database("reporting")])
    changed = [name for name in reports_before if reports_before[name] != reports_after[name]]
    assert not changed, f"read models changed on redelivery: {changed}"
    # Enrolment answered every redelivered submission as a duplicate: no new events.
    assert len(await read_topics(p.broker.bootstrap, ["enrolment.events.v1"])) == records_before
    for name in after.figures:
        assert after.figures[name].delivered == before.figures[name].delivered, name
    assert after.figures["matching"].notes["matches"] == before.figures["matching"].notes["matches"]
    record_figures("redelivery of everything", after, trials=1, submissions=len(p.submissions))


async def test_consumers_joining_and_leaving_mid_stream(pipeline: Pipeline) -> None:
    """A second instance of each service joins the groups mid-stream (a rebalance moves
    partitions while batches are in flight), then leaves again (another rebalance)."""
    p, rng = pipeline, random.Random(SEED + 2)
    segment = max(50, EVENTS // 6)
    second = {
        name: ServiceProcess(
            name,
            p.broker.bootstrap,
            p.db_url,
            database=svc.database,
            group=svc.group,
            log_dir=svc.log_dir,
            extra_env=dict(svc.extra_env),
        )
        for name, svc in p.services.items()
    }
    try:
        async with p.publisher() as publisher:
            await publisher.send([s.record() for s in p.new_submissions(segment, rng)])
            for svc in second.values():
                svc.start()
            await asyncio.gather(*(svc.wait_ready() for svc in second.values()))
            await publisher.send([s.record() for s in p.new_submissions(segment, rng)])
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            for svc in second.values():
                await asyncio.to_thread(svc.terminate, 30.0)
            await publisher.send([s.record() for s in p.new_submissions(segment, rng)])
        verdict = await check(p, "after second instances joined and left")
    finally:
        for svc in second.values():
            svc.stop()
    record_figures("rebalance (join + leave)", verdict, trials=2, submissions=len(p.submissions))
