"""Faults the way operators cause them, for the broker-loss tests and the soak
(bench/soak_broker_loss.py): kill -9 of any process, the broker started again with an
empty log, providers re-sending what the broker lost, and figures taken from the
services' own databases (the topics lose their history with the broker)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.processes import ChildProcess
from shared.kafka import ensure_topics
from shared.topics import all_topics
from tests.reliability.broker import Broker
from tests.reliability.config import SEED, log
from tests.reliability.figures import FIGURES_FILE
from tests.reliability.pipeline import Pipeline, Submission
from tests.reliability.processes import wait_until
from tests.reliability.reporting_oracle import reporting_counts

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


async def settle(p: Pipeline, what: str, timeout_s: float = SETTLE_TIMEOUT_S) -> Figures:
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
            timeout_s=timeout_s,
            what=f"exact figures ({what})",
            interval_s=1.0,
            alive=[s for s in p.services.values()],
        )
    except AssertionError as exc:
        raise AssertionError(f"{what}: {last[0] if last else None}\n{exc}") from None
    await p.wait_drained(timeout_s)
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
    entry = {"test": test, "at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": SEED}
    entry.update(figures)
    log("FIGURES %s", json.dumps(entry, default=str))
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps(entry, default=str) + "\n")


async def kill_everything_mid_chunk(
    p: Pipeline,
    broker: Broker,
    database: Any,
    chunk: Sequence[Submission],
    point: int,
    *,
    timeout_s: float,
) -> float:
    """Stream ``chunk``; once ``point`` of it are stored, kill -9 every process at once
    (services, broker, database) and start them again. Returns seconds until all are up.
    The caller re-sends the chunk (the broker lost what it had not delivered)."""
    before = await stored_count(p)
    sender = asyncio.create_task(stream_until_killed(p, chunk))

    async def reached() -> bool:
        return await stored_count(p) - before >= point or sender.done()

    await wait_until(reached, timeout_s=timeout_s, what=f"{point} of the chunk stored")
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
    return time.monotonic() - began
