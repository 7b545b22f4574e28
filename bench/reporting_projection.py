"""Reporting projection throughput: batched bulk writes vs one transaction per event.

Both runs use the real projector and MongoDB adapter against the embedded MongoDB
(SecantusDB) started here, on the same synthetic events (enrolment lifecycles, opt-ins,
matches). The baseline applies each event on its own (one transaction and one write per
collection per event: what a per-message subscriber does); the measured runs take the
batches a batch subscriber would hand over, pre-aggregate them in memory and apply one
bulk write per collection. Both must end with identical aggregates (checked).

    uv run python bench/reporting_projection.py [--events 3000] [--baseline-events 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymongo import AsyncMongoClient

from devstack.embedded import EmbeddedMongo
from devstack.processes import free_port
from services.reporting.entrypoints.kafka import CONSUMED
from services.reporting.repository import (
    AGGREGATE_COLLECTIONS,
    ProjectionUnitOfWork,
    ensure_control,
)
from services.reporting.use_cases.projector import Projector
from shared.cloudevents import Event
from shared.contracts.reference import LOCAL_AUTHORITIES, CombinedAuthority, Level
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES
from tests.factories.dead_letters import RecordingDeadLetters
from tests.factories.reporting import (
    FakeRecord,
    Pair,
    accepted,
    assessed,
    attendance,
    cloud,
    completed,
    opted_in,
    record_of,
    withdrawn,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cpu import CpuMeter, cpu_table

RESULTS = Path(__file__).resolve().parent / "results"


class Counting:
    def __init__(self) -> None:
        self.requests = 0
        self.operations = 0

    def written(self, collection: str, operations: int) -> None:
        self.requests += 1
        self.operations += operations


def records(n_events: int, seed: int = 11) -> list[FakeRecord]:
    rng = random.Random(seed)
    las = list(LOCAL_AUTHORITIES[CombinedAuthority.GREATER_MANCHESTER])
    enrolment_events: list[Event] = []
    match_events: list[Event] = []
    while len(enrolment_events) + len(match_events) < n_events:
        e = accepted(la=rng.choice(las), start=date(2025, rng.randint(1, 12), 5))
        enrolment_events += [e, attendance(e, 10, rng.randint(3, 10))]
        if rng.random() < 0.5:
            enrolment_events.append(assessed(e, Level.ENTRY_2))
        enrolment_events.append(completed(e) if rng.random() < 0.7 else withdrawn(e))
        if rng.random() < 0.4:
            enrolment_events.append(opted_in(e))
            pair = Pair(e)
            match_events += [pair.proposed(), pair.confirmed(rng.uniform(1, 30))]
    out: list[FakeRecord] = []
    offsets = {ENROLMENT_EVENTS: 0, MATCHING_MATCHES: 0}
    i = j = 0
    while i < len(enrolment_events) or j < len(match_events):
        take_enrolment = j >= len(match_events) or (
            i < len(enrolment_events) and rng.random() < 0.75
        )
        topic = ENROLMENT_EVENTS if take_enrolment else MATCHING_MATCHES
        event = enrolment_events[i] if take_enrolment else match_events[j]
        i, j = (i + 1, j) if take_enrolment else (i, j + 1)
        out.append(record_of(cloud(event), topic, offsets[topic]))
        offsets[topic] += 1
    return out[:n_events]


async def run(url: str, db_name: str, recs: list[FakeRecord], batch: int) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        db = client[db_name]
        await ensure_control(db)
        counting = Counting()
        projector = Projector(
            partial(ProjectionUnitOfWork, db, metrics=counting), CONSUMED, RecordingDeadLetters()
        )
        started = time.perf_counter()
        for k in range(0, len(recs), batch):
            await projector.handle(recs[k : k + batch])
        elapsed = time.perf_counter() - started
        aggregates = {}
        for name in AGGREGATE_COLLECTIONS.values():
            docs = await db[f"g1_{name}"].find({}, {"_id": 1, "counts": 1}).to_list()
            aggregates[name] = sorted((d["_id"], sorted(d["counts"].items())) for d in docs)
        return {
            "events": len(recs),
            "seconds": elapsed,
            "events_per_s": len(recs) / elapsed,
            "write_requests": counting.requests,
            "write_operations": counting.operations,
            "aggregates": aggregates,
        }
    finally:
        await client.close()


async def ceilings(url: str, n: int) -> dict[str, float]:
    """The database alone: bare ``insert_many`` (docs/s) and bare bulk upserts of small
    counter documents (``$inc``, upsert; ops/s), 500 per call."""
    from pymongo import UpdateOne

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        coll = client["bench_ceiling"]["docs"]
        docs = [{"_id": f"e{i}", "at": i, "learner": f"lp_{i:032d}"} for i in range(n)]
        started = time.perf_counter()
        for k in range(0, n, 500):
            await coll.insert_many(docs[k : k + 500], ordered=True)
        inserts = n / (time.perf_counter() - started)
        agg = client["bench_ceiling"]["agg"]
        ops = [
            UpdateOne({"_id": f"a{i % 400}"}, {"$inc": {"counts.x": 1}}, upsert=True)
            for i in range(n)
        ]
        started = time.perf_counter()
        for k in range(0, n, 500):
            await agg.bulk_write(ops[k : k + 500], ordered=True)
        upserts = n / (time.perf_counter() - started)
        return {"insert_many": inserts, "upserts": upserts}
    finally:
        await client.close()


async def main_async(n_events: int, baseline_events: int) -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-reporting-"))
    mongo = EmbeddedMongo(free_port(), None, log_dir)
    mongo.start()
    assert mongo.process and mongo.process.popen
    meter = CpuMeter({"service": os.getpid(), "database": mongo.process.popen.pid})
    try:
        recs = records(n_events)
        ceiling = await ceilings(mongo.url, n_events)
        base = await run(mongo.url, "bench_base", recs[:baseline_events], 1)
        same = await run(mongo.url, "bench_check", recs[:baseline_events], 500)
        if same["aggregates"] != base["aggregates"]:
            print("batched and per-event projections disagree", file=sys.stderr)
            return 1
        rows = []
        for batch in (100, 500):
            with meter.phase(f"projection, batches of {batch}"):
                measured = await run(mongo.url, f"bench_{batch}", recs, batch)
            rows.append((batch, measured))
    finally:
        mongo.stop()

    print("| figure | baseline | measured | ratio |")
    print("|---|---|---|---|")
    for batch, measured in rows:
        ratio = measured["events_per_s"] / base["events_per_s"]
        print(
            f"| projection throughput, batches of {batch} (events/s) | "
            f"{base['events_per_s']:.0f} (one transaction per event) | "
            f"{measured['events_per_s']:.0f} | {ratio:.1f}x |"
        )
    for batch, measured in rows:
        base_per_event = base["write_requests"] / base["events"]
        per_event = measured["write_requests"] / measured["events"]
        print(
            f"| MongoDB write requests per event, batches of {batch} | "
            f"{base_per_event:.2f} | {per_event:.3f} | {base_per_event / per_event:.0f}x fewer |"
        )
    for batch, measured in rows:
        ratio = measured["events_per_s"] / ceiling["insert_many"]
        print(
            f"| projection, batches of {batch}, against bare `insert_many` (docs/s) | "
            f"{ceiling['insert_many']:.0f} | {measured['events_per_s']:.0f} | {ratio:.1%} |"
        )
    print(f"| bare bulk upserts (`$inc`, 500 per call), ops/s | | {ceiling['upserts']:.0f} | |")
    print()
    print(
        f"Baseline on the first {base['events']} of {n_events} events (it is slow); "
        "aggregates checked identical between per-event and batched runs. "
        "Ceilings measured on the same database server in the same run."
    )
    print()
    print("CPU per event by process (this process: the projector; /proc):")
    print()
    for line in cpu_table(
        meter, {f"projection, batches of {b}": m["events"] for b, m in rows}, unit="event"
    ):
        print(line)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reporting_projection.json").write_text(
        json.dumps(
            {
                "baseline": {k: v for k, v in base.items() if k != "aggregates"},
                "batched": {
                    str(b): {k: v for k, v in m.items() if k != "aggregates"} for b, m in rows
                },
            },
            indent=2,
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--baseline-events", type=int, default=400)
    args = parser.parse_args()
    return asyncio.run(main_async(args.events, args.baseline_events))


if __name__ == "__main__":
    sys.exit(main())
