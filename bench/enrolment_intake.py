"""Benchmark: enrolment intake throughput by channel, against single HTTP POSTs measured in
the same run, on the embedded broker and database (started here on free ports).

- HTTP batch (1000 items per request, one transaction, one bulk write per collection)
- Kafka intake (batch subscriber, one transaction per polled batch), end to end: from
  producing the records until every EnrolmentAccepted is on enrolment.events.v1, so the
  outbox relay's publishing is included.
- The outbox relay alone, draining a committed backlog: events grouped per transaction
  into outbox documents, against one outbox document per event (both in the same run).
- The ceilings of the same machine in the same run, with no platform code in the way:
  bare ``insert_many`` of enrolment-sized documents on the embedded database (docs/s)
  and bare aiokafka produce (futures, ``acks=all``) of event-sized records (msg/s).
- CPU used per item in each phase by this process (the service, in process, and the
  benchmark's client), the database server and the broker (/proc).

Prints Markdown tables (figure | baseline | measured | ratio); rates are items/s.

    uv run python bench/enrolment_intake.py [--items 2000] [--singles 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.embedded import EmbeddedKafka, EmbeddedMongo
from devstack.processes import free_port
from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app
from services.enrolment.settings import EnrolmentSettings
from shared.kafka import ensure_topics
from shared.record_signing import sign_record
from shared.topics import ENROLMENT_EVENTS, ENROLMENT_INBOUND, all_topics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cpu import CpuMeter, cpu_table


def submission(i: int, run: str) -> dict[str, Any]:
    return {
        "learner_ref": f"B{run}{i:06d}"[:12],
        "date_of_birth": f"19{60 + i % 40}-0{1 + i % 9}-1{i % 9}",
        "sex": "F" if i % 2 else "M",
        "ethnicity": random.choice(["asian_pakistani", "white_british", "black_african"]),
        "combined_authority": "E47000001",
        "local_authority": f"E080000{1 + i % 9:02d}",
        "learning_aim_ref": f"ZESOL{run}01",  # tells the channels' events apart
        "programme": "esol",
        "level": "entry_2",
        "start_date": "2025-09-15",
        "planned_end_date": "2026-07-17",
        "planned_hours": 120,
        "fund_model": 35,
        "consent": {"matching": i % 3 == 0},
        "wants_conversation_partner": i % 4 == 0,
        "availability": ["tue-pm"],
    }


async def insert_many_ceiling(url: str, n: int) -> float:
    """Bare ``insert_many`` (1000 per call) of enrolment-sized documents: docs/s."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        coll = client["bench_ceiling"]["docs"]
        docs = [
            {"_id": f"c{i}", "learner": f"lp_{i:032d}", "submission": submission(i, "C"), "v": 0}
            for i in range(n)
        ]
        started = time.perf_counter()
        for k in range(0, n, 1000):
            await coll.insert_many(docs[k : k + 1000], ordered=True)
        return n / (time.perf_counter() - started)
    finally:
        await client.close()


async def produce_ceiling(bootstrap: str, n: int) -> float:
    """Bare aiokafka produce (futures awaited together, acks=all) of ~1 KB records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        value = json.dumps({**submission(0, "P"), "pad": "x" * 300}).encode()
        started = time.perf_counter()
        futures = [
            await producer.send("bench.ceiling", value, key=f"lp_{i % 997}".encode())
            for i in range(n)
        ]
        await asyncio.gather(*futures)
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def wait_published(relay: Any, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while await relay.refresh_backlog():
        if time.monotonic() > deadline:
            raise RuntimeError("the relay did not publish the backlog")
        await asyncio.sleep(0.02)


async def bench(
    kafka: EmbeddedKafka, mongo: EmbeddedMongo, items: int, singles: int, meter: CpuMeter
) -> tuple[list[tuple[str, float, float]], dict[str, float]]:
    await ensure_topics(kafka.bootstrap_servers, [*all_topics(), "bench.ceiling"])
    ceilings = {
        "insert_many": await insert_many_ceiling(mongo.url, max(items, 2000)),
        "produce": await produce_ceiling(kafka.bootstrap_servers, max(items, 5000)),
    }
    # The relay first: a service started after the Kafka intake phase would also consume
    # that phase's records from enrolment.inbound.v1 (a new group reads from the start)
    # while its relay is being timed.
    unbatched = await relay_rate(kafka, mongo, items // 4, per_row=1, batch_size=1000)
    batched = await relay_rate(kafka, mongo, items, per_row=200, batch_size=1000, meter=meter)
    settings = EnrolmentSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        mongodb_url=mongo.url,
        outbox_poll_interval_s=0.1,
        # Throughput, not quotas, is measured here: one provider sends everything.
        rate_limit_per_s=1_000_000,
        rate_limit_burst=1_000_000,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            admin = ProviderAdmin(app.state.runtime.db)
            ukprn = "1" + "".join(random.choices(string.digits, k=7))
            key = await admin.register_provider("Bench College", ukprn, ["E47000001"])
            auth = {"Authorization": f"Bearer {key}"}

            started = time.perf_counter()
            for i in range(singles):
                r = await client.post("/v1/enrolments", json=submission(i, "S"), headers=auth)
                assert r.status_code == 201, r.text
            single_rate = singles / (time.perf_counter() - started)

            relay = app.state.runtime.state["enrolment"].relay
            await wait_published(relay)
            started = time.perf_counter()
            with meter.phase("HTTP batch intake"):
                for start in range(0, items, 1000):
                    chunk = [submission(i, "H") for i in range(start, min(items, start + 1000))]
                    r = await client.post(
                        "/v1/enrolments/batch", json={"items": chunk}, headers=auth
                    )
                    assert r.status_code == 200, r.text[:500]
                    assert r.json()["summary"]["created"] == len(chunk), r.json()["summary"]
                batch_rate = items / (time.perf_counter() - started)
                # Stored and published: until the relay has published every event.
                await wait_published(relay)
            batch_published_rate = items / (time.perf_counter() - started)

            with meter.phase("Kafka intake"):
                kafka_rate = await kafka_intake(kafka.bootstrap_servers, ukprn, key, items)
    rows = [
        ("HTTP batch (1000/request), stored", single_rate, batch_rate),
        ("HTTP batch (1000/request), stored and published", single_rate, batch_published_rate),
        ("Kafka intake, stored and published", single_rate, kafka_rate),
        (
            "outbox relay, events published (baseline: one outbox document per event)",
            unbatched,
            batched,
        ),
    ]
    ceilings["http_published"] = batch_published_rate
    ceilings["kafka"] = kafka_rate
    ceilings["relay"] = batched
    return rows, ceilings


async def relay_rate(
    kafka: EmbeddedKafka,
    mongo: EmbeddedMongo,
    n: int,
    *,
    per_row: int,
    batch_size: int,
    meter: CpuMeter | None = None,
) -> float:
    """Events/s the relay drains from a backlog of ``n`` committed events."""
    settings = EnrolmentSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        mongodb_url=mongo.url,
        mongodb_database=f"bench_relay_{per_row}_{batch_size}",
        consumer_group=f"bench-relay-{per_row}-{batch_size}",
        outbox_relay_enabled=False,
        outbox_row_max_messages=per_row,
        outbox_batch_size=batch_size,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            admin = ProviderAdmin(app.state.runtime.db)
            ukprn = "1" + "".join(random.choices(string.digits, k=7))
            key = await admin.register_provider("Relay College", ukprn, ["E47000001"])
            for start in range(0, n, 1000):
                chunk = [
                    {**submission(i, "R"), "wants_conversation_partner": False}
                    for i in range(start, min(n, start + 1000))
                ]
                await client.post(
                    "/v1/enrolments/batch",
                    json={"items": chunk},
                    headers={"Authorization": f"Bearer {key}"},
                )
        relay = app.state.runtime.state["enrolment"].relay
        phase = meter.phase("outbox relay") if meter else contextlib.nullcontext()
        with phase:
            started = time.perf_counter()
            published = 0
            while published < n:
                done = await relay.run_once()
                if not done:
                    raise RuntimeError(f"relay stopped at {published}/{n}")
                published += done
            return n / (time.perf_counter() - started)


async def kafka_intake(bootstrap: str, ukprn: str, api_key: str, items: int) -> float:
    consumer = AIOKafkaConsumer(
        ENROLMENT_EVENTS, bootstrap_servers=bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    await consumer.getmany(timeout_ms=1000)  # position at the end before producing
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        for i in range(items):
            value = json.dumps(submission(i, "K")).encode()
            await producer.send(
                ENROLMENT_INBOUND,
                value,
                key=ukprn.encode(),
                headers=sign_record(api_key, ENROLMENT_INBOUND, ukprn.encode(), value),
            )
        await producer.flush()
        seen = 0
        deadline = time.monotonic() + 300
        while seen < items and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    headers = dict(r.headers)
                    if headers.get("ce_type") == b"org.commonground.EnrolmentAccepted.v1":
                        body = json.loads(r.value)
                        if body["learning_aim_ref"] == "ZESOLK01":
                            seen += 1
        if seen < items:
            raise RuntimeError(f"only {seen}/{items} enrolments published from Kafka intake")
        return items / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--singles", type=int, default=300)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    log_dir = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    kafka = EmbeddedKafka(free_port(), log_dir)
    mongo = EmbeddedMongo(free_port(), None, log_dir)
    try:
        kafka.start()
        mongo.start()
        assert kafka.process and kafka.process.popen and mongo.process and mongo.process.popen
        meter = CpuMeter(
            {
                "service": os.getpid(),
                "database": mongo.process.popen.pid,
                "broker": kafka.process.popen.pid,
            }
        )
        rows, measured = asyncio.run(bench(kafka, mongo, args.items, args.singles, meter))
    finally:
        kafka.stop()
        mongo.stop()
    print(f"Enrolment intake rates (items/s) against {args.singles} single `POST /v1/enrolments`")
    print(f"in the same run; {args.items} items per channel. Embedded Tansu + SecantusDB.")
    print("Relay: events/s drained from a committed backlog in rounds of ~1000 events, with a")
    print("transaction's events grouped into outbox documents (up to 200 each), against one")
    print("outbox document per event.")
    print()
    print("| figure | baseline | measured | ratio |")
    print("|---|---:|---:|---:|")
    for name, baseline, rate in rows:
        print(f"| {name} | {baseline:,.0f}/s | {rate:,.0f}/s | {rate / baseline:.1f}x |")
    print()
    print("Against the ceilings measured in the same run (bare `insert_many` of enrolment-sized")
    print("documents, 1000 per call; bare aiokafka produce of ~1 KB records, futures, acks=all):")
    print()
    print("| figure | ceiling | measured | platform / ceiling |")
    print("|---|---:|---:|---:|")
    ins, prod = measured["insert_many"], measured["produce"]
    for name, ceiling, label, rate in (
        ("HTTP batch, stored and published", ins, "insert_many", measured["http_published"]),
        ("Kafka intake, stored and published", ins, "insert_many", measured["kafka"]),
        ("outbox relay, events published", prod, "produce", measured["relay"]),
    ):
        print(f"| {name} | {label}: {ceiling:,.0f}/s | {rate:,.0f}/s | {rate / ceiling:.1%} |")
    print()
    print("CPU per item by process (this process holds the service *and* the benchmark's")
    print("client: HTTP requests, Kafka producer and consumer):")
    print()
    for line in cpu_table(
        meter,
        {"HTTP batch intake": args.items, "Kafka intake": args.items, "outbox relay": args.items},
    ):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
