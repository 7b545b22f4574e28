"""End-to-end pipeline benchmark on the real embedded stack: a seeded stream of
submissions through HTTP batch intake and Kafka intake → enrolment (outbox relay) →
matching → reporting, every service a real process (tests/reliability: Pipeline).

Figures, each beside a baseline measured in the same run:

* **sustained rate**: the whole stream pushed as fast as intake takes it, timed from the
  first submission until every enrolment is visible in reporting's read models (the
  document the reports are computed from, written in the same transaction as the
  aggregates); against a bare aiokafka produce → consume → ``insert_many`` loop over the
  same submissions on the same broker and database server;
* **freshness**: time from a 201 (an item ``created`` in a batch response) until the
  enrolment is visible in reporting (p50/p95/p99), with the stream paced at 50% and 90%
  of the sustained rate (HTTP batches every 100 ms);
* CPU (cores) and memory (RSS) of every process;
* **how cost grows**: each of ``--events`` (several sizes) is pushed in turn on the same
  stack, beside the bare loop at the same size.

The verdict of tests/reliability (nothing lost, nothing doubled, reports equal to the
oracle) is checked at the end: a fast wrong answer is no answer.

    uv run python bench/pipeline.py [--events 2000 10000 50000] [--paced-s 20] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _cpu import cpu_seconds
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from devstack.embedded import EmbeddedMongo
from devstack.processes import free_port
from tests.reliability.broker import Broker, start_broker
from tests.reliability.pipeline import Pipeline, Submission, submission

BATCH = 500  # HTTP batch size of the sustained phase
FAST_ENV = {
    "enrolment": {
        "ENROLMENT_RATE_LIMIT_PER_S": "1000000",
        "ENROLMENT_RATE_LIMIT_BURST": "1000000",
        "ENROLMENT_INBOUND_MAX_RECORDS": "500",
        "ENROLMENT_OUTBOX_LINGER_S": "0.02",
    },
    "matching": {},
    "reporting": {"REPORTING_PROJECTION_MAX_RECORDS": "500"},
}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ------------------------------------------------------------------------ the bare loop


async def bare_loop(bootstrap: str, url: str, subs: list[Submission]) -> float:
    """Produce the submissions' bodies, consume them, ``insert_many`` each polled batch,
    commit: events/s from the first send to the last insert."""
    topic = f"bench.bare.{random.randrange(1 << 30)}"
    from shared.kafka import ensure_topics

    await ensure_topics(bootstrap, [topic])
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    coll = client["bench_bare"][topic]  # one per run: ids are partition:offset
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        started = time.perf_counter()

        async def produce() -> None:
            futures = [
                await producer.send(topic, json.dumps(s.doc).encode(), key=s.ukprn.encode())
                for s in subs
            ]
            await asyncio.gather(*futures)

        async def consume() -> None:
            stored = 0
            while stored < len(subs):
                batch = await consumer.getmany(timeout_ms=200, max_records=500)
                docs = [
                    {"_id": f"{r.partition}:{r.offset}", **json.loads(r.value)}
                    for records in batch.values()
                    for r in records
                ]
                if docs:
                    await coll.insert_many(docs, ordered=True)
                    await consumer.commit()
                    stored += len(docs)

        await asyncio.gather(produce(), consume())
        return len(subs) / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()
        await client.close()


# ------------------------------------------------------------------------ the platform


class Visibility:
    """Polls reporting's read model for enrolment ids and notes when each appears."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._coll = client[database]["g1_enrolments"]
        self.waiting: dict[str, float] = {}  # enrolment id → time of its 201
        self.lags: list[float] = []
        self.seen = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or self.waiting:
            if self.waiting:
                ids = list(self.waiting)
                now = time.perf_counter()
                for k in range(0, len(ids), 2000):
                    cursor = self._coll.find({"_id": {"$in": ids[k : k + 2000]}}, {"_id": 1})
                    async for doc in cursor:
                        created = self.waiting.pop(doc["_id"], None)
                        if created is not None:
                            self.lags.append(now - created)
                            self.seen += 1
            if stop.is_set() and not self.waiting:
                return
            await asyncio.sleep(0.05)


async def post_batch(
    http: httpx.AsyncClient, key: str, subs: list[Submission], visible: Visibility | None
) -> int:
    r = await http.post(
        "/v1/enrolments/batch",
        json={"items": [s.doc for s in subs]},
        headers={"Authorization": f"Bearer {key}"},
    )
    now = time.perf_counter()
    r.raise_for_status()
    created = 0
    for item in r.json()["results"]:
        if item["result"] == "created":
            created += 1
            if visible is not None:
                visible.waiting[item["enrolment_id"]] = now
    return created


async def push(p: Pipeline, http: httpx.AsyncClient, subs: list[Submission]) -> None:
    """Half the stream through HTTP batches (per provider), half through Kafka."""
    half = len(subs) // 2
    by_provider: dict[str, list[Submission]] = defaultdict(list)
    for s in subs[:half]:
        by_provider[s.ukprn].append(s)

    async def http_side() -> None:
        for ukprn, items in by_provider.items():
            for k in range(0, len(items), BATCH):
                await post_batch(http, p.provider_keys[ukprn], items[k : k + BATCH], None)

    async def kafka_side() -> None:
        async with p.publisher() as publisher:
            await publisher.send([s.record() for s in subs[half:]])

    await asyncio.gather(http_side(), kafka_side())


async def visible_count(client: AsyncMongoClient[dict[str, Any]], database: str) -> int:
    """Enrolments the reports count: the sum of ``started`` over the outcome aggregates
    (a few hundred documents, what the reports themselves sum). Counting the enrolment
    states instead scanned a collection that grows with the stream, every poll, on the
    same database server the pipeline uses: the benchmark slowed what it measured."""
    cursor = client[database]["g1_agg_outcomes"].find({}, {"counts.started": 1})
    return sum([int(doc["counts"].get("started", 0)) async for doc in cursor])


async def sustained(
    p: Pipeline, http: httpx.AsyncClient, client: AsyncMongoClient[dict[str, Any]], n: int
) -> tuple[float, float]:
    subs = p.new_submissions(n, random.Random(n))
    base = await visible_count(client, p.database("reporting"))
    started = time.perf_counter()
    await push(p, http, subs)
    accepted_s = time.perf_counter() - started
    deadline = time.monotonic() + 900
    while await visible_count(client, p.database("reporting")) < base + n:
        if time.monotonic() > deadline:
            raise RuntimeError("the stream did not reach the reports")
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - started
    return n / elapsed, n / accepted_s


async def paced(
    p: Pipeline,
    http: httpx.AsyncClient,
    client: AsyncMongoClient[dict[str, Any]],
    rate: float,
    seconds: float,
    rng: random.Random,
) -> Visibility:
    visible = Visibility(client, p.database("reporting"))
    stop = asyncio.Event()
    watcher = asyncio.create_task(visible.run(stop))
    ticks = int(seconds * 10)
    per_tick = max(1, round(rate / 10))
    ukprn = p.providers[0]
    started = time.perf_counter()
    for tick in range(ticks):
        subs = [submission(ukprn, rng) for _ in range(per_tick)]
        p.submissions.extend(subs)
        await post_batch(http, p.provider_keys[ukprn], subs, visible)
        delay = started + (tick + 1) * 0.1 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    stop.set()
    await asyncio.wait_for(watcher, timeout=600)
    return visible


@dataclass
class SizeRun:
    """The sustained phase at one stream size, beside the bare loop at the same size."""

    events: int
    bare: float
    rate: float
    intake_rate: float
    seconds: float
    cpu: dict[str, float]  # cores, per process, over the phase
    rss: dict[str, float]  # MB, per process, after the phase


async def main_async(args: argparse.Namespace) -> int:
    sizes = sorted(args.events)
    log_dir = Path(tempfile.mkdtemp(prefix="cg-bench-pipeline-"))
    broker: Broker = await start_broker(log_dir)
    mongo = EmbeddedMongo(free_port(), None, log_dir)
    await asyncio.to_thread(mongo.start)
    assert mongo.process and mongo.process.popen and broker.kafka.process
    assert broker.kafka.process.popen
    rng = random.Random(args.seed)
    p = Pipeline(broker, mongo.url, log_dir, extra_env=FAST_ENV)
    runs: list[SizeRun] = []
    try:
        # The bare loop at every size first, on the same broker and database server.
        bare: dict[int, float] = {}
        for n in sizes:
            bare_subs = [
                Submission(s.ukprn, s.doc) for s in p.new_submissions(n, random.Random(n + 1))
            ]
            p.submissions.clear()
            bare[n] = await bare_loop(broker.bootstrap, mongo.url, bare_subs)

        await p.prepare()
        await p.start()
        await p.register_volunteers(per_borough=2, capacity=3)
        pids = {
            **{name: svc.pid for name, svc in p.services.items()},
            "database": mongo.process.popen.pid,
            "broker": broker.kafka.process.popen.pid,
        }
        async with (
            httpx.AsyncClient(base_url=p["enrolment"].url, timeout=120) as http,
            AsyncMongoClient(mongo.url) as client,  # type: ignore[var-annotated]
        ):
            # Warm-up (first batches pay for connections and index creation).
            await sustained(p, http, client, 200)
            fresh: dict[float, Visibility] = {}
            for n in sizes:
                cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
                t0 = time.perf_counter()
                rate, intake_rate = await sustained(p, http, client, n)
                wall = time.perf_counter() - t0
                cpu = {k: (cpu_seconds(v) - cpu0[k]) / wall for k, v in pids.items()}
                rss = {k: rss_mb(v) for k, v in pids.items()}
                runs.append(SizeRun(n, bare[n], rate, intake_rate, wall, cpu, rss))
                print(
                    f"{n} events: {rate:,.0f}/s end to end ({wall:.0f} s); bare loop "
                    f"{bare[n]:,.0f}/s; CPU cores / RSS MB: "
                    + ", ".join(f"{k} {cpu[k]:.2f}/{rss[k]:,.0f}" for k in pids),
                    file=sys.stderr,
                )
                if n == sizes[0]:
                    for share in (0.5, 0.9):
                        fresh[share] = await paced(p, http, client, rate * share, args.paced_s, rng)
            await p.wait_drained(timeout_s=600)
        verdict = await p.verify()
    finally:
        p.stop()
        mongo.stop()
        broker.kafka.stop()

    print(
        f"Seeded submissions (half HTTP batches of {BATCH}, half signed Kafka records), 4 "
        "partitions, three service processes, embedded Tansu + SecantusDB on the same 2 "
        "cores; the sizes run one after another on one stack, so each starts on the "
        "database the smaller ones left. Bare loop: aiokafka produce → consume → "
        "`insert_many` (500 per poll) → commit, over the same number of submissions, same "
        "broker and database server."
    )
    print()
    print("| events | bare loop | end to end, visible in reports | ratio | intake only | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r.events:,} | {r.bare:,.0f}/s | {r.rate:,.0f}/s ({r.seconds:.0f} s) | "
            f"{r.rate / r.bare:.1%} | {r.intake_rate:,.0f}/s | {r.intake_rate / r.bare:.1%} |"
        )
    print()
    first = runs[0]
    for share, v in fresh.items():
        print(
            f"Freshness at {share:.0%} of the sustained rate of {first.events:,} "
            f"({first.rate * share:,.0f}/s, {v.seen} enrolments), 201 → visible in the "
            f"reports, p50 / p95 / p99: {percentile(v.lags, 0.5):.2f} / "
            f"{percentile(v.lags, 0.95):.2f} / {percentile(v.lags, 0.99):.2f} s"
        )
    print()
    names = list(first.cpu)
    print("| process | " + " | ".join(f"CPU / RSS at {r.events:,}" for r in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for name in names:
        cells = " | ".join(f"{r.cpu[name]:.2f} cores / {r.rss[name]:,.0f} MB" for r in runs)
        print(f"| {name} | {cells} |")
    print()
    print(f"Verdict (tests/reliability oracle): {'exact' if verdict.exact else 'NOT EXACT'}")
    print()
    print("```")
    print(verdict.summary())
    print("```")
    return 0 if verdict.exact else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--events", type=int, nargs="+", default=[2000], help="stream sizes, e.g. 2000 10000 50000"
    )
    parser.add_argument("--paced-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
