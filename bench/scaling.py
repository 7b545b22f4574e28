"""Scale out: consumer throughput with one and with two instances per consumer group.

For each consumer service (reporting, matching) and each instance count (1, 2), on a
fresh embedded broker (Tansu) with 4 partitions per topic and a fresh database on one
embedded MongoDB (SecantusDB):

1. start N service processes (``python -m services.<name>``) in one consumer group and
   wait until the group is stable with N members (start-up and joining not timed);
2. publish the same seeded stream of enrolment and match events (learner-pseudonym and
   local-authority keys, as the real producers use);
3. time from the first record published until the group has committed every offset
   (for reporting that means: projected into MongoDB in a committed transaction).

The 1-instance run is the baseline; the ratio is 2-instance / 1-instance throughput,
both measured in this run. The reporting read models of the two runs are compared
document by document (they must be identical).

    uv run python bench/scaling.py [--events 12000] [--matching-events 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from devstack.embedded import EmbeddedKafka, EmbeddedMongo
from devstack.processes import free_port
from services.reporting.repository import AGGREGATE_COLLECTIONS
from shared.cloudevents import Event
from shared.contracts.reference import LOCAL_AUTHORITIES, Level, Programme
from shared.kafka import ensure_topics
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES, all_topics
from tests.factories.reporting import (
    Pair,
    accepted,
    assessed,
    attendance,
    cloud,
    completed,
    opted_in,
    withdrawn,
)

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
CONSUMED = {"reporting": (ENROLMENT_EVENTS, MATCHING_MATCHES), "matching": (ENROLMENT_EVENTS,)}

Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def stream(n_events: int, *, matches: bool, seed: int = 31) -> list[Record]:
    """A realistic mix: lifecycles (accepted, attendance, assessment, completion or
    withdrawal), opt-ins for about a third, proposals and confirmations."""
    rng = random.Random(seed)
    boroughs = [la for las in LOCAL_AUTHORITIES.values() for la in las]
    out: list[Record] = []

    def add(topic: str, key: str, event: Event) -> None:
        ce = cloud(event)
        headers = [(k, v.encode()) for k, v in ce.headers().items()]
        out.append((topic, key.encode(), ce.body(), headers))

    while len(out) < n_events:
        start = date(2024, rng.randint(1, 12), rng.randint(1, 28))
        esol = rng.random() < 0.5
        e = accepted(
            la=rng.choice(boroughs),
            programme=Programme.ESOL if esol else Programme.DIGITAL,
            level=Level.ENTRY_1 if esol else Level.LEVEL_1,
            start=start,
        )
        add(ENROLMENT_EVENTS, e.learner, e)
        for _ in range(rng.randint(1, 4)):
            add(ENROLMENT_EVENTS, e.learner, attendance(e, 8, rng.randint(3, 8)))
        if esol and rng.random() < 0.6:
            add(ENROLMENT_EVENTS, e.learner, assessed(e, Level.ENTRY_2))
        fate = rng.random()
        if fate < 0.7:
            add(ENROLMENT_EVENTS, e.learner, completed(e))
        elif fate < 0.85:
            add(ENROLMENT_EVENTS, e.learner, withdrawn(e))
        if rng.random() < 0.33:
            add(ENROLMENT_EVENTS, e.learner, opted_in(e))
            if matches and rng.random() < 0.6:
                pair = Pair(e)
                add(MATCHING_MATCHES, e.local_authority, pair.proposed())
                add(MATCHING_MATCHES, e.local_authority, pair.confirmed(rng.uniform(2, 30)))
    return out[:n_events]


async def publish(bootstrap: str, records: list[Record]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return started


async def group_members(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.groups
    state, group_members = described[2], described[5]
    return len(group_members) if state == "Stable" else 0


async def committed_fraction(bootstrap: str, group: str, topics: tuple[str, ...]) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        done = 0
        for tp in tps:
            done += min(await consumer.committed(tp) or 0, ends[tp])
        return done / total if total else 1.0
    finally:
        await consumer.stop()


def start_instances(
    service: str, n: int, bootstrap: str, mongo_url: str, database: str, group: str, logs: Path
) -> list[subprocess.Popen[bytes]]:
    prefix = service.upper()
    procs = []
    for i in range(n):
        env = {
            **os.environ,
            "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "COMMONGROUND_MONGODB_URL": mongo_url,
            f"{prefix}_MONGODB_DATABASE": database,
            f"{prefix}_CONSUMER_GROUP": group,
            f"{prefix}_HTTP_PORT": str(free_port()),
            "COMMONGROUND_LOG_LEVEL": "WARNING",
            # matching: no optimiser runs during the measurement (no volunteers anyway)
            "MATCHING_BATCH_WINDOW_S": "3600",
        }
        with open(logs / f"{service}-{n}-{i}.log", "wb") as log:  # the child keeps its copy
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"services.{service}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            )
    return procs


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


async def aggregates(mongo_url: str, database: str) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        db = client[database]
        control = await db["projection_control"].find_one({"_id": "active"})
        generation = control["generation"] if control else 1
        out = {}
        for name in AGGREGATE_COLLECTIONS.values():
            docs = await db[f"g{generation}_{name}"].find({}, {"_id": 1, "counts": 1}).to_list()
            out[name] = sorted((str(d["_id"]), sorted(d["counts"].items())) for d in docs)
        return out
    finally:
        await client.close()


async def measure(
    service: str, n: int, records: list[Record], mongo: EmbeddedMongo, logs: Path
) -> dict[str, Any]:
    mongo_url = mongo.url
    assert mongo.process is not None and mongo.process.popen is not None
    db_pid = mongo.process.popen.pid
    kafka = EmbeddedKafka(free_port(), logs / f"kafka-{service}-{n}")
    await asyncio.to_thread(kafka.start)  # it runs its own event loop to probe the broker
    database = f"bench_scaling_{service}_{n}"
    group = f"bench-{service}-{n}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await ensure_topics(kafka.bootstrap_servers, all_topics(), partitions=PARTITIONS)
        procs = start_instances(
            service, n, kafka.bootstrap_servers, mongo_url, database, group, logs
        )
        deadline = time.monotonic() + 120
        while await group_members(kafka.bootstrap_servers, group) != n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{service} x{n} did not form a stable group; see {logs}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # let every member fetch its assignment
        cpu_before = [cpu_seconds(p.pid) for p in procs], cpu_seconds(db_pid)
        started = await publish(kafka.bootstrap_servers, records)
        published = time.perf_counter() - started
        while await committed_fraction(kafka.bootstrap_servers, group, CONSUMED[service]) < 1.0:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{service} x{n} exited; see {logs}")
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        instance_cpu = sum(cpu_seconds(p.pid) for p in procs) - sum(cpu_before[0])
        db_cpu = cpu_seconds(db_pid) - cpu_before[1]
        consumed = sum(1 for r in records if r[0] in CONSUMED[service])
        result: dict[str, Any] = {
            "instances": n,
            "events": consumed,
            "seconds": elapsed,
            "events_per_s": consumed / elapsed,
            "publish_seconds": published,
            "instances_cpu_share": instance_cpu / elapsed,
            "database_cpu_share": db_cpu / elapsed,
        }
        if service == "reporting":
            result["aggregates"] = await aggregates(mongo_url, database)
        return result
    finally:
        stop(procs)
        kafka.stop()


async def main_async(n_events: int, n_matching: int) -> int:
    logs = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    mongo = EmbeddedMongo(free_port(), None, logs)
    await asyncio.to_thread(mongo.start)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        plans = {
            "reporting": stream(n_events, matches=True),
            "matching": stream(n_matching, matches=False),
        }
        for service, records in plans.items():
            results[service] = {}
            for n in (1, 2):
                print(f"{service} x{n}…", file=sys.stderr, flush=True)
                results[service][n] = await measure(service, n, records, mongo, logs)
    finally:
        mongo.stop()

    reporting = results["reporting"]
    if reporting[1]["aggregates"] != reporting[2]["aggregates"]:
        print("1-instance and 2-instance read models differ", file=sys.stderr)
        return 1

    print("| figure | baseline | measured | ratio |")
    print("|---|---|---|---|")
    labels = {
        "reporting": "reporting projection, 2 instances (events/s)",
        "matching": "matching enrolment-event consumption, 2 instances (events/s)",
    }
    for service, label in labels.items():
        one, two = results[service][1], results[service][2]
        print(
            f"| {label} | {one['events_per_s']:.0f} (1 instance) | {two['events_per_s']:.0f} | "
            f"{two['events_per_s'] / one['events_per_s']:.2f}x |"
        )
    for service in labels:
        for n in (1, 2):
            r = results[service][n]
            print(
                f"| {service}, {n} instance{'s' if n > 1 else ''}: CPU used (cores) by "
                f"instances / database server | | {r['instances_cpu_share']:.2f} / "
                f"{r['database_cpu_share']:.2f} | |"
            )
    print()
    print(
        f"{reporting[1]['events']} reporting events (both topics) and "
        f"{results['matching'][1]['events']} enrolment events for matching; 4 partitions; "
        "timed from the first publish to the last committed offset; publishing took "
        f"{reporting[1]['publish_seconds']:.1f} s. Read models of the 1- and 2-instance "
        f"reporting runs checked identical. Machine: {os.cpu_count()} cores shared by the "
        "broker, the database server and the instances, so a second instance adds "
        "concurrency, not a second machine's capacity."
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(
        json.dumps(
            {
                service: {
                    str(n): {k: v for k, v in r.items() if k != "aggregates"}
                    for n, r in runs.items()
                }
                for service, runs in results.items()
            },
            indent=2,
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--matching-events", type=int, default=4000)
    args = parser.parse_args()
    return asyncio.run(main_async(args.events, args.matching_events))


if __name__ == "__main__":
    sys.exit(main())
