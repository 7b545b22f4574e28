"""The database stops for 10 s under load, then starts again (same storage): the services
stay up, report themselves not ready, retry with backoff without dead-lettering anything
(an outage is not the records' fault), and drain the backlog when it is back, with no
loss and no double count."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from pathlib import Path

import pytest

from tests.reliability.broker import Broker
from tests.reliability.config import SEED, log
from tests.reliability.database import Database
from tests.reliability.figures import record_figures
from tests.reliability.pipeline import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

OUTAGE_S = float(os.environ.get("COMMONGROUND_RELIABILITY_OUTAGE_S", "10"))
SUBMISSIONS = int(os.environ.get("COMMONGROUND_RELIABILITY_OUTAGE_EVENTS", "600"))


async def test_database_down_for_ten_seconds_under_load(
    broker: Broker, database: Database, logs: Path
) -> None:
    p = Pipeline(broker, database.url, logs)
    await p.prepare()
    await p.start()
    rng = random.Random(SEED + 10)
    try:
        await p.register_volunteers(per_borough=4, capacity=10)
        records = [s.record() for s in p.new_submissions(SUBMISSIONS, rng)]
        async with p.publisher() as publisher:
            # A steady stream over ~20 s; the database goes away 4 s in.
            stream = asyncio.create_task(publisher.paced(records, rate_per_s=SUBMISSIONS / 20))
            await asyncio.sleep(4)
            await asyncio.to_thread(database.stop)
            down_at = time.monotonic()
            log("database stopped")
            not_ready: set[str] = set()

            async def probe(name: str) -> None:
                if not await p[name].ready():
                    not_ready.add(name)

            while (left := OUTAGE_S - (time.monotonic() - down_at)) > 0:
                probes = asyncio.gather(*(probe(n) for n in p.services))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probes, timeout=left)
                await asyncio.sleep(min(0.5, max(0.0, left)))
            await asyncio.to_thread(database.start)
            log("database started again after %.1fs", time.monotonic() - down_at)
            await stream
        for name, svc in p.services.items():
            assert svc.running, f"{name} died in the outage:\n{svc.log_tail()}"
        assert not_ready == set(p.services), f"only {not_ready} reported not ready"
        await p.wait_drained(300)
        verdict = await p.verify()
        log("after a %ss database outage:\n%s", OUTAGE_S, verdict.summary())
        assert verdict.exact, verdict.summary()
        record_figures(
            f"database down {OUTAGE_S:.0f}s", verdict, trials=1, submissions=len(p.submissions)
        )
    finally:
        p.stop()
