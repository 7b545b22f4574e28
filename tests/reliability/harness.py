"""Harness of the reliability tests: a broker of our own, services as real processes
(``python -m services.<name>``) that can be SIGKILLed and SIGTERMed, event producers, a
reader of whole topics, and an oracle for the reporting read models.

Each test module gets its own Tansu broker (it starts in well under a second) and its own
database server (``database.py``), so its topics hold exactly the streams it publishes:
"no dead letter" means the ``.dlq`` topics are empty, and a consumer group reading from
offset 0 sees nothing of other modules. Databases and consumer groups are unique per
pipeline.

Sizes come from the environment, with modest defaults so that the directory runs in a few
minutes on two cores:

* ``COMMONGROUND_RELIABILITY_EVENTS`` submissions in the kill -9 stream (default 600; the
  issue's figure is 20000),
* ``COMMONGROUND_RELIABILITY_TRIALS`` kill -9 rounds (default 5),
* ``COMMONGROUND_RELIABILITY_SEED`` to replay a run (the seed is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from devstack.embedded import EmbeddedKafka
from devstack.processes import ChildProcess, free_port
from services.reporting.domain.projection import (
    AGGREGATES,
    AggregateName,
    LoadedStates,
    aggregate_id,
    full_counts,
    is_consumed,
    project_batch,
    validate_event,
)
from services.reporting.repository import AGGREGATE_COLLECTIONS, READ_MODEL_COLLECTIONS
from services.reporting.settings import ReportingSettings
from shared.cloudevents import CloudEvent, EnvelopeError, Event, EventRegistry
from shared.contracts.matching import MatchRef
from shared.contracts.reference import Level, Programme, WithdrawalReason
from shared.contracts.registry import registry_for
from shared.kafka import ensure_topics
from shared.learner_keys import KeyBatch
from shared.topics import (
    ENROLMENT_EVENTS,
    MATCHING_MATCHES,
    all_topics,
)
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

logger = logging.getLogger(__name__)

EVENTS = int(os.environ.get("COMMONGROUND_RELIABILITY_EVENTS", "600"))
TRIALS = max(1, int(os.environ.get("COMMONGROUND_RELIABILITY_TRIALS", "5")))
SEED = int(os.environ.get("COMMONGROUND_RELIABILITY_SEED", str(random.randrange(1 << 30))))

Doc = dict[str, Any]
REPORTING_CONSUMES = (ENROLMENT_EVENTS, MATCHING_MATCHES)
REPORTED = registry_for(ENROLMENT_EVENTS, MATCHING_MATCHES)

ENV_PREFIX = {"enrolment": "ENROLMENT", "matching": "MATCHING", "reporting": "REPORTING"}

# Settings that make the services react at test speed, and batches small enough that a
# kill lands at many points of a stream (all are ordinary settings).
FAST: dict[str, dict[str, str]] = {
    "enrolment": {
        "ENROLMENT_OUTBOX_POLL_INTERVAL_S": "0.2",
        "ENROLMENT_INBOUND_BATCH_TIMEOUT_MS": "100",
        "ENROLMENT_INBOUND_MAX_RECORDS": "100",
    },
    "matching": {
        "MATCHING_SCHEDULER_TICK_S": "0.5",
        "MATCHING_OUTBOX_POLL_INTERVAL_S": "0.2",
        "MATCHING_LEASE_TTL_S": "3",
        "MATCHING_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    },
    "reporting": {
        "REPORTING_PROJECTION_BATCH_TIMEOUT_MS": "100",
        "REPORTING_PROJECTION_MAX_RECORDS": "250",
    },
}


def log(message: str, *args: object) -> None:
    """Progress lines (shown with -s or on failure)."""
    text = message % args if args else message
    sys.stderr.write(f"[reliability {time.strftime('%H:%M:%S')}] {text}\n")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------
# A broker of our own.


@dataclass
class Broker:
    kafka: EmbeddedKafka

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers


async def start_broker(log_dir: Path, partitions: int = 4) -> Broker:
    kafka = EmbeddedKafka(free_port(), log_dir)
    await asyncio.to_thread(kafka.start)
    await ensure_topics(kafka.bootstrap_servers, all_topics(), partitions=partitions)
    return Broker(kafka)


class TcpProxy:
    """A TCP relay in front of the broker that can be cut (every connection dropped,
    new ones refused) and restored: the broker becomes unreachable without losing what
    it holds (the embedded one keeps its log in memory only)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._transports.difference_update(pair)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()

    async def restore(self) -> None:
        await self.start()


async def start_proxied_broker(log_dir: Path, partitions: int = 4) -> tuple[Broker, TcpProxy]:
    """A broker reached only through a :class:`TcpProxy` (it advertises the proxy)."""
    from devstack.embedded import kafka_answers, tansu_binary
    from devstack.processes import wait_until as wait_for_child

    kafka = EmbeddedKafka(free_port(), log_dir)
    proxy = TcpProxy(kafka.port)
    await proxy.start()
    kafka.process = ChildProcess(
        name="kafka (tansu, proxied)",
        argv=[
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{kafka.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        log_path=log_dir / "kafka-proxied.log",
    )
    kafka.process.start()
    bootstrap = f"127.0.0.1:{proxy.port}"
    await asyncio.to_thread(
        wait_for_child,
        lambda: kafka_answers(bootstrap),
        timeout_s=60,
        what="the proxied broker",
        child=kafka.process,
    )
    await ensure_topics(bootstrap, all_topics(), partitions=partitions)
    return ProxiedBroker(kafka, bootstrap), proxy


@dataclass
class ProxiedBroker(Broker):
    address: str = ""

    @property
    def bootstrap(self) -> str:
        return self.address


# ---------------------------------------------------------------------------------------
# Services as processes.


@dataclass
class ServiceProcess:
    """``python -m services.<service>`` with its own database, group and HTTP port."""

    service: str
    bootstrap: str
    mongo_url: str
    database: str
    group: str
    log_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: ChildProcess | None = None
    starts: int = 0

    @property
    def prefix(self) -> str:
        return ENV_PREFIX[self.service]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.service}-{self.group}.log"

    def env(self) -> dict[str, str]:
        p = self.prefix
        return {
            "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "COMMONGROUND_MONGODB_URL": self.mongo_url,
            f"{p}_MONGODB_DATABASE": self.database,
            f"{p}_CONSUMER_GROUP": self.group,
            f"{p}_HTTP_PORT": str(self.port),
            f"{p}_HTTP_HOST": "127.0.0.1",
            "COMMONGROUND_LOG_JSON": "false",
            "COMMONGROUND_CONSUMER_LAG_INTERVAL_S": "3600",
            "COMMONGROUND_OTEL_ENABLED": "false",
            **FAST.get(self.service, {}),
            **self.extra_env,
        }

    def start(self) -> None:
        assert self.process is None or not self.process.running, "already running"
        self.starts += 1
        with open(self.log_path, "a") as out:
            out.write(f"\n===== start #{self.starts} at {datetime.now(UTC).isoformat()}\n")
        self.process = ChildProcess(
            name=f"{self.service} ({self.group})",
            argv=[sys.executable, "-m", f"services.{self.service}"],
            log_path=self.log_path,
            env=self.env(),
            cwd=Path(__file__).resolve().parents[2],
        )
        self.process.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.popen is not None
        return self.process.popen.pid

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=3.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise AssertionError(
                        f"{self.service} exited ({self.exit_code()}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.service} not ready after {timeout_s}s:\n{self.log_tail()}")

    async def ready(self) -> bool:
        async with httpx.AsyncClient(timeout=3.0) as client:
            try:
                return (await client.get(f"{self.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

    def kill(self) -> None:
        """kill -9: no shutdown code runs at all."""
        assert self.process is not None and self.process.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.popen.wait(10)
        self.process.stop()  # reaps the group, closes the log

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (what an orchestrator sends) and wait; returns the exit code."""
        assert self.process is not None and self.process.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.process.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        self.process.stop()
        return code

    def exit_code(self) -> int | None:
        return self.process.exit_code() if self.process else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cg-reliability-"))


# ---------------------------------------------------------------------------------------
# Kafka: publishing, reading whole topics, group progress.


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()


def outgoing(ce: CloudEvent[Event]) -> Outgoing:
    """A CloudEvent in Kafka binary mode on its contract topic, with its contract key
    (learner pseudonym on enrolment events, local authority on match events)."""
    data = ce.data
    if isinstance(data, MatchRef):
        topic, key = MATCHING_MATCHES, data.local_authority
    else:
        topic, key = ENROLMENT_EVENTS, str(getattr(data, "learner", "x"))
    return Outgoing(
        topic,
        key.encode(),
        ce.body(),
        tuple((k, v.encode()) for k, v in ce.headers().items()),
    )


class Publisher:
    """A plain aiokafka producer (acks=all) that sends in pipelined chunks."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262_144
        )

    async def __aenter__(self) -> Publisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, items: Sequence[Outgoing], chunk: int = 500) -> list[tuple[str, int, int]]:
        """Send and wait; returns (topic, partition, offset) of each record."""
        out: list[tuple[str, int, int]] = []
        for start in range(0, len(items), chunk):
            futures = [
                await self._producer.send(i.topic, i.value, key=i.key, headers=list(i.headers))
                for i in items[start : start + chunk]
            ]
            for item, meta in zip(
                items[start : start + chunk], await asyncio.gather(*futures), strict=True
            ):
                out.append((item.topic, meta.partition, meta.offset))
        return out

    async def paced(
        self,
        items: Sequence[Outgoing],
        *,
        rate_per_s: float,
        chunk: int = 100,
        on_progress: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        """Send at about ``rate_per_s`` (a stream, not one burst); ``on_progress(sent)``
        after every chunk."""
        started = time.monotonic()
        for start in range(0, len(items), chunk):
            await self.send(items[start : start + chunk], chunk=chunk)
            sent = min(start + chunk, len(items))
            if on_progress is not None:
                await on_progress(sent)
            ahead = sent / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    await consumer.topics()
    return [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])
    ]


async def _drain(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], *, quiet_polls: int = 3
) -> list[ConsumerRecord[bytes, bytes]]:
    """Fetch from the current positions until ``quiet_polls`` fetches in a row bring
    nothing. (Tansu answers ListOffsets with the base offset of the last record *batch*
    plus one, so its "end offset" can lag the log by a batch: the end is found by reading.)"""
    out: list[ConsumerRecord[bytes, bytes]] = []
    quiet = 0
    while quiet < quiet_polls:
        batch = await consumer.getmany(*tps, timeout_ms=200, max_records=10_000)
        records = [r for rs in batch.values() for r in rs]
        quiet = 0 if records else quiet + 1
        out.extend(records)
    return out


async def read_topics(bootstrap: str, topics: Iterable[str]) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topics``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return await _drain(consumer, tps)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The true end of each partition: the broker's answer, then read past it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        if not tps:
            return {}
        reported = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(0, reported[tp] - 1))
        ends = dict(reported)
        for r in await _drain(consumer, tps, quiet_polls=2):
            tp = TopicPartition(r.topic, r.partition)
            ends[tp] = max(ends[tp], r.offset + 1)
        return ends
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        out: dict[TopicPartition, int] = {}
        for t in topics:
            for p in sorted(consumer.partitions_for_topic(t) or []):
                tp = TopicPartition(t, p)
                out[tp] = await consumer.committed(tp) or 0
        return out
    finally:
        await consumer.stop()


async def caught_up(bootstrap: str, group: str, topics: Sequence[str]) -> bool:
    ends = await end_offsets(bootstrap, topics)
    done = await committed(bootstrap, group, topics)
    return all(done.get(tp, 0) >= end for tp, end in ends.items())


async def reset_group(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    """Move a (stopped) consumer group back to offset 0 on ``topics`` (what
    ``kafka-consumer-groups --reset-offsets --to-earliest`` does)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or [])
        ]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.5,
    alive: Sequence[ServiceProcess] = (),
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        for svc in alive:
            if not svc.running:
                raise AssertionError(f"{svc.service} died:\n{svc.log_tail()}")
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    tails = "\n".join(f"--- {s.service}:\n{s.log_tail(25)}" for s in alive)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last={last!r}\n{tails}")


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return v.decode(errors="replace") if v is not None else None
    return None


def decode_events(
    records: Iterable[ConsumerRecord[bytes, bytes]], registry: EventRegistry = REPORTED
) -> list[tuple[ConsumerRecord[bytes, bytes], CloudEvent[Event]]]:
    out = []
    for r in records:
        try:
            out.append((r, registry.decode(r.value or b"", dict(r.headers or ()))))
        except EnvelopeError:
            continue
    return out


# ---------------------------------------------------------------------------------------
# Mongo.


@contextlib.asynccontextmanager
async def mongo(url: str) -> AsyncIterator[AsyncMongoClient[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True)
    try:
        yield client
    finally:
        await client.close()


# ---------------------------------------------------------------------------------------
# The reporting oracle: aggregates computed in memory from the events, exactly as the
# projection defines them, against the documents in the live generation.


AggregateTable = dict[tuple[str, str], dict[str, int]]


def expected_aggregates(events: Iterable[CloudEvent[Event]]) -> AggregateTable:
    """Each distinct ``ce_id`` once, in the given (log) order: key events are noted and
    sealed personal fields opened with the reporting service's key ring, as its
    projector does, then the whole stream is projected as one batch from empty states."""
    keys = KeyBatch(ReportingSettings().key_ring(), {}, set())
    seen: set[str] = set()
    chosen: list[Event] = []
    for ce in events:
        if ce.id in seen:
            continue
        seen.add(ce.id)
        keys.note(ce.data)
        if not is_consumed(ce.data):
            continue
        validate_event(ce.data)
        chosen.append(keys.reveal(ce.data))
    outcome = project_batch(LoadedStates(), chosen)
    assert not outcome.failed, f"events that cannot apply: {outcome.failed[:3]}"
    table: AggregateTable = {}
    for (name, key), counts in outcome.deltas.items():
        table[(AGGREGATE_COLLECTIONS[name], aggregate_id(key))] = full_counts(name, counts)
    return table


async def actual_aggregates(db: AsyncDatabase[Doc]) -> AggregateTable:
    control = await db["projection_control"].find_one({"_id": "active"})
    generation = int(control["generation"]) if control else 1
    table: AggregateTable = {}
    for name, collection in AGGREGATE_COLLECTIONS.items():
        async for doc in db[f"g{generation}_{collection}"].find({}):
            table[(collection, doc["_id"])] = full_counts(name, doc["counts"])
    return table


async def reporting_counts(db: AsyncDatabase[Doc]) -> dict[str, int]:
    control = await db["projection_control"].find_one({"_id": "active"})
    generation = int(control["generation"]) if control else 1
    out: dict[str, int] = {}
    for name in ("enrolments", "matches", "participants", "applied_events"):
        out[name] = await db[f"g{generation}_{name}"].count_documents({})
    totals: Counter[str] = Counter()
    wanted: tuple[tuple[AggregateName, str], ...] = (
        ("outcomes", "agg_outcomes"),
        ("matching", "agg_matching"),
    )
    for name, collection in wanted:
        async for doc in db[f"g{generation}_{collection}"].find({}):
            for f in AGGREGATES[name].fields:
                totals[f"{name}.{f}"] += int(doc["counts"].get(f, 0))
    out.update(totals)
    return out


@dataclass(frozen=True)
class Comparison:
    """Differences between the expected and the stored aggregates, as counts."""

    missing: int  # sum of counts expected but not stored (lost)
    extra: int  # sum of counts stored beyond expectation (counted twice)
    cells: int  # aggregate cells compared

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.extra == 0


def compare(expected: AggregateTable, actual: AggregateTable) -> Comparison:
    missing = extra = cells = 0
    for key in expected.keys() | actual.keys():
        want, got = expected.get(key, {}), actual.get(key, {})
        for f in want.keys() | got.keys():
            cells += 1
            diff = got.get(f, 0) - want.get(f, 0)
            if diff > 0:
                extra += diff
            else:
                missing -= diff
    return Comparison(missing, extra, cells)


# ---------------------------------------------------------------------------------------
# Event streams.

LAS = {
    # A borough from each of four combined authorities.
    "E08000004": "Oldham",
    "E08000010": "Wigan",
    "E08000025": "Birmingham",
    "E06000023": "Bristol",
}


def reporting_stream(n_events: int, rng: random.Random) -> list[CloudEvent[Event]]:
    """About ``n_events`` valid events: per learner an acceptance and some of attendance
    (additive: counted twice would show), assessment, completion or withdrawal, opt-in,
    and a match (proposed, then confirmed or declined, sometimes ended). Events of one
    learner are in order (one partition: key = learner); match events are in order per
    local authority (key)."""
    year = rng.randint(1950, 1999)
    enrolment_events: list[CloudEvent[Event]] = []
    match_events: list[CloudEvent[Event]] = []
    while len(enrolment_events) + len(match_events) < n_events:
        la = rng.choice(list(LAS))
        programme = rng.choice([Programme.ESOL, Programme.ESOL, Programme.DIGITAL])
        level = Level.ENTRY_1 if programme is Programme.ESOL else None
        start = date(year, rng.randint(1, 12), rng.randint(1, 28))
        e = accepted(la=la, programme=programme, level=level, start=start)
        enrolment_events.append(cloud(e))
        if rng.random() < 0.5:
            enrolment_events.append(cloud(attendance(e, planned=10, attended=rng.randint(0, 10))))
        if programme is Programme.ESOL and rng.random() < 0.3:
            enrolment_events.append(cloud(assessed(e, Level.ENTRY_2)))
        fate = rng.random()
        if fate < 0.4:
            enrolment_events.append(cloud(completed(e)))
        elif fate < 0.6:
            enrolment_events.append(cloud(withdrawn(e, WithdrawalReason.HEALTH)))
        if rng.random() < 0.3:
            enrolment_events.append(cloud(opted_in(e)))
            pair = Pair(e)
            match_events.append(cloud(pair.proposed()))
            if rng.random() < 0.6:
                match_events.append(cloud(pair.confirmed(after_days=rng.randint(2, 40))))
                if rng.random() < 0.3:
                    match_events.append(cloud(pair.ended()))
            else:
                match_events.append(cloud(pair.declined()))
    # Interleave the two topics as they would arrive; per-key order is kept by merging.
    out: list[CloudEvent[Event]] = []
    i = j = 0
    while i < len(enrolment_events) or j < len(match_events):
        if j >= len(match_events) or (i < len(enrolment_events) and rng.random() < 0.7):
            out.append(enrolment_events[i])
            i += 1
        else:
            out.append(match_events[j])
            j += 1
    return out


def token(
    n: int, alphabet: str = string.ascii_uppercase + string.digits, rng: random.Random | None = None
) -> str:
    r = rng or random
    return "".join(r.choices(alphabet, k=n))


async def snapshot(db: AsyncDatabase[Doc]) -> dict[str, list[bytes]]:
    """Every read-model document of the live reporting generation, as raw BSON."""
    raw = db.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))
    control = await db["projection_control"].find_one({"_id": "active"})
    generation = int(control["generation"]) if control else 1
    out: dict[str, list[bytes]] = {}
    for name in READ_MODEL_COLLECTIONS:
        docs = await raw[f"g{generation}_{name}"].find({}).sort("_id", 1).to_list()
        out[name] = [bytes(d.raw) for d in docs]
    return out


FIGURES_FILE = Path(__file__).resolve().parents[2] / "artifacts" / "reliability.jsonl"


def record_figures(test: str, verdict: Any, **extra: Any) -> None:
    """Log a test's figures and append them to artifacts/reliability.jsonl."""
    figures = {
        name: {
            "expected": f.expected,
            "delivered": f.delivered,
            "lost": f.lost,
            "duplicated": f.duplicated,
            **f.notes,
        }
        for name, f in verdict.figures.items()
    }
    entry = {
        "test": test,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": SEED,
        **extra,
        "figures": figures,
        "report_cells": verdict.comparison.cells,
        "report_missing": verdict.comparison.missing,
        "report_extra": verdict.comparison.extra,
        "dead_letters": verdict.dead_letters,
    }
    log("FIGURES %s", json.dumps(entry))
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps(entry) + "\n")
