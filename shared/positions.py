"""Consumer positions tied to the log they were recorded in.

A Kafka offset names a place in *one* log. When the broker loses its log (the embedded
broker keeps it in memory), or an operator deletes and re-creates a topic, offsets
start again at 0 and "applied up to offset N" no longer says anything about the new
records at offsets 0..N. So a position here is an offset *and* the ``ce_id`` of the
event found at it, and de-duplication is by ``ce_id`` alone, never by offset: a new
log's records are applied whatever their offsets, and a replaced log is *detected*
(logged, counted in ``commonground_log_resets_detected_total``, alerted on) by what
its records say: an event at or below the stored offset that was never applied (in
the recorded log everything up to the position was), or another event at the stored
offset itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from prometheus_client import Counter
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.kafka import aiokafka_security_kwargs
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Position:
    """The highest offset applied in a partition and the event id found there (None
    when that record was not an event, e.g. poison)."""

    offset: int
    ce_id: str | None = None


@dataclass(frozen=True)
class Seen:
    """A consumed record that carries an event this consumer applies."""

    topic: str
    partition: int
    offset: int
    ce_id: str

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


def replaced_logs(
    seen: Iterable[Seen], stored: Mapping[TopicPartition, Position], applied: set[str]
) -> set[TopicPartition]:
    """Partitions whose records come from another log than the stored positions.

    ``applied`` holds, of the ``seen`` ids, those already applied."""
    replaced: set[TopicPartition] = set()
    for record in seen:
        position = stored.get(record.tp)
        if position is None or record.offset > position.offset:
            continue
        if record.offset == position.offset and position.ce_id not in (None, record.ce_id):
            replaced.add(record.tp)
        elif record.ce_id not in applied:
            replaced.add(record.tp)
    return replaced


def first_offsets(records: Iterable[Any]) -> dict[TopicPartition, int]:
    """The lowest offset per partition among consumed ``records`` (what the fence checks)."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    return first


def advanced_positions(
    records: Iterable[tuple[TopicPartition, int, str | None]],
    stored: Mapping[TopicPartition, Position],
    replaced: set[TopicPartition],
) -> dict[TopicPartition, Position]:
    """The positions to store after a batch: per partition the batch's highest record,
    where it is beyond the stored one or the partition's log was replaced."""
    highest: dict[TopicPartition, tuple[int, str | None]] = {}
    for tp, offset, ce_id in records:
        if tp not in highest or highest[tp][0] < offset:
            highest[tp] = (offset, ce_id)
    out: dict[TopicPartition, Position] = {}
    for tp, (offset, ce_id) in highest.items():
        position = stored.get(tp)
        if tp in replaced or position is None or offset > position.offset:
            out[tp] = Position(offset, ce_id)
    return out


def log_resets_counter(telemetry: Telemetry) -> Counter:
    """One metric for every component that detects a replaced log."""
    return telemetry.counter(
        "commonground_log_resets_detected_total",
        "Partitions found to hold another log than the one recorded (a broker that lost "
        "its log, a topic deleted and re-created), by component, topic and partition.",
        ("component", "topic", "partition"),
    )


@dataclass(frozen=True)
class Anchor:
    """The last event the relay published to a partition, and since when it has been
    publishing into this partition's current log."""

    topic: str
    partition: int
    offset: int
    ce_id: str
    log_since: datetime


# How long the quick check waits for the anchor's record before the full check decides.
QUICK_CHECK_S = 0.2


class LogCheck(Protocol):
    async def replaced(self, anchors: Sequence[Anchor]) -> list[Anchor]: ...
    async def close(self) -> None: ...


class LogProbe:
    """Tells whether the broker still holds the log an anchor was recorded in: the
    record at the anchor's offset must exist and carry the anchor's ``ce_id``.

    Kafka offsets restart at 0 in a new log (a broker that lost its storage, a topic
    deleted and re-created), so an offset alone cannot tell two logs apart; the event
    id stored at that offset can."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        security: Any = None,
        fetch_timeout_s: float = 3.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security
        self._timeout_s = fetch_timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",
                client_id="commonground-log-probe",
                **aiokafka_security_kwargs(self._security),
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def replaced(self, anchors: Sequence[Anchor]) -> list[Anchor]:
        if not anchors:
            return []
        try:
            return await self._replaced(anchors)
        except Exception:
            await self.close()  # a fresh client next time (the broker may have restarted)
            raise

    async def _replaced(self, anchors: Sequence[Anchor]) -> list[Anchor]:
        consumer = await self._client()
        by_tp = {KafkaPartition(a.topic, a.partition): a for a in anchors}
        # The common case, checked before every batch a consumer applies: the anchor's
        # record is there. One fetch decides it; only the rest needs the full check.
        quick = await self._read_at(consumer, by_tp, QUICK_CHECK_S, quiet=True)
        replaced = [a for tp, a in by_tp.items() if tp in quick and quick[tp] != a.ce_id]
        undecided = [a for tp, a in by_tp.items() if tp not in quick]
        if not undecided:
            return replaced
        return replaced + await self._checked(consumer, undecided)

    async def _read_at(
        self,
        consumer: AIOKafkaConsumer,
        anchors: Mapping[KafkaPartition, Anchor],
        timeout_s: float,
        *,
        quiet: bool = False,
    ) -> dict[KafkaPartition, str | None]:
        """The ``ce_id`` at each anchor's offset (None: another offset came instead);
        partitions not read within ``timeout_s`` are left out."""
        found: dict[KafkaPartition, str | None] = {}
        # A fresh assignment per check: a consumer kept assigned (even paused) across a
        # topic re-creation read the new log wrongly and reported live records gone.
        consumer.assign(list(anchors))
        try:
            for tp, anchor in anchors.items():
                consumer.seek(tp, anchor.offset)
            deadline = asyncio.get_running_loop().time() + timeout_s
            while len(found) < len(anchors):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch = await consumer.getmany(
                        *[tp for tp in anchors if tp not in found],
                        timeout_ms=int(min(remaining, 0.5) * 1000),
                    )
                except Exception:
                    if not quiet:
                        raise
                    break  # e.g. the offset is out of range: the full check decides
                for tp, records in batch.items():
                    for record in records:
                        if record.offset == anchors[tp].offset:
                            found[tp] = ce_id_of(record.headers)
                        elif record.offset > anchors[tp].offset and tp not in found:
                            found[tp] = None  # the anchor's offset holds nothing now
        finally:
            # Unassigned again: an assigned consumer keeps fetching in the background.
            consumer.unsubscribe()
        return found

    async def _checked(self, consumer: AIOKafkaConsumer, anchors: Sequence[Anchor]) -> list[Anchor]:
        by_tp = {KafkaPartition(a.topic, a.partition): a for a in anchors}
        existing = await _partitions_of(consumer, {a.topic for a in anchors})
        gone = [a for tp, a in by_tp.items() if tp not in existing]
        present = {tp: a for tp, a in by_tp.items() if tp in existing}
        if not present:
            return gone
        tps = list(present)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        replaced = list(gone)
        to_fetch: dict[KafkaPartition, Anchor] = {}
        for tp, anchor in present.items():
            if starts[tp] > anchor.offset:
                # Retention removed the anchor's record: nothing to compare. The log is
                # taken to be the same one (a lost or re-created log starts at 0).
                continue
            to_fetch[tp] = anchor
        found = await self._read_at(consumer, to_fetch, self._timeout_s) if to_fetch else {}
        for tp, anchor in to_fetch.items():
            if tp in found:
                if found[tp] != anchor.ce_id:
                    replaced.append(anchor)
            elif ends[tp] <= anchor.offset:
                replaced.append(anchor)  # the log is shorter than what was published
            else:
                logger.warning(
                    "could not read %s[%d] at offset %d to check its log; assuming it is "
                    "the same log",
                    anchor.topic,
                    anchor.partition,
                    anchor.offset,
                )
        return replaced


async def _partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> set[KafkaPartition]:
    existing: set[KafkaPartition] = set()
    cluster_topics = await consumer.topics()
    for topic in topics:
        if topic not in cluster_topics:
            continue
        for partition in consumer.partitions_for_topic(topic) or ():
            existing.add(KafkaPartition(topic, partition))
    return existing


def ce_id_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    for key, value in headers or ():
        if key == "ce_id" and value is not None:
            return bytes(value).decode("utf-8", "replace")
    return None


def log_probe_for(settings: Any) -> LogProbe:
    """The probe for a service's settings (its broker and Kafka security)."""
    return LogProbe(settings.kafka_bootstrap_servers, security=settings.kafka_security())


class LogFence:
    """Keeps a consumer from reading a new log as if it were the old one.

    Before every batch that goes on past the stored position, the record at the stored
    position must still be the one recorded there (its ``ce_id``), checked on the
    broker. Every batch, not only on resuming: a topic deleted and re-created under a
    running consumer leaves it fetching at its old offset, and once the new log grows
    past it the records before are skipped with no gap to see (the broker answers a
    fetch beyond a log's end with nothing, not an error). A gap between the position and
    the next record is no proof either way: the broker may leave offsets unused (seen on
    Tansu after a restart; rewinding on every gap then loops for ever), and another
    instance may have moved the position on while it owned the partition (rewinding on
    every gap looped for ever after a restart: Tansu's log really skipped offsets, every
    re-read went from 4 to 23). Without a probe (or a recorded ``ce_id``) a gap is taken
    as a replaced log. A replaced log is logged, counted and rewound; de-duplication by
    event id makes the re-read safe."""

    def __init__(self, component: str, resets: Counter, probe: LogCheck | None = None) -> None:
        self._component = component
        self._resets = resets
        self._probe = probe

    async def replaced(
        self, first: Mapping[TopicPartition, int], stored: Mapping[TopicPartition, Position]
    ) -> set[TopicPartition]:
        """Of the partitions whose next records start at ``first``, those that must be
        read again from the beginning."""
        out: set[TopicPartition] = set()
        to_verify: list[Anchor] = []
        for tp, offset in first.items():
            position = stored.get(tp)
            if position is None or position.offset < 0:
                continue
            if offset <= position.offset:
                continue  # a redelivery: skipped by event id
            gap = offset > position.offset + 1
            ce_id = position.ce_id
            # Decided by the log itself whenever it can be asked: a gap alone is no proof
            # (the broker can leave offsets unused, and another instance may have moved
            # the position on while it owned the partition).
            if ce_id is not None and self._probe is not None:
                to_verify.append(Anchor(tp[0], tp[1], position.offset, ce_id, datetime.now(UTC)))
            elif gap:
                out.add(tp)
                self._report(tp, f"offset {offset} follows position {position.offset}")
        if to_verify and self._probe is not None:
            try:
                gone = await self._probe.replaced(to_verify)
            except Exception as exc:  # checked again with the next batch
                logger.warning(
                    "%s: could not check the logs of %d partition(s) (%s)",
                    self._component,
                    len(to_verify),
                    type(exc).__name__,
                )
                return out
            for anchor in to_verify:
                tp = (anchor.topic, anchor.partition)
                if anchor in gone:
                    out.add(tp)
                    self._report(tp, f"the event at position {anchor.offset} is gone")
        return out

    def _report(self, tp: TopicPartition, why: str) -> None:
        self._resets.labels(self._component, tp[0], str(tp[1])).inc()
        logger.error(
            "%s: %s[%d] holds another log than the one its position was recorded in (%s); "
            "reading it again from the beginning (events already applied are skipped by id)",
            self._component,
            tp[0],
            tp[1],
            why,
        )


class MongoPositions:
    """Per-partition positions (offset and the event id found there) in a service's own
    database, for a consumer that keeps no other per-partition bookkeeping.

    Read from the database for every batch, never cached: after a rebalance another
    instance may have moved a partition's position on."""

    def __init__(self, db: AsyncDatabase[Any], collection: str = "consumer_positions") -> None:
        self._positions = db[collection]

    async def load(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, Position]:
        ids = {f"{tp[0]}:{tp[1]}": tp for tp in tps}
        found: dict[TopicPartition, Position] = {}
        async for doc in self._positions.find({"_id": {"$in": list(ids)}}):
            found[ids[doc["_id"]]] = Position(int(doc["offset"]), doc.get("ce_id"))
        return found

    async def save(self, positions: Mapping[TopicPartition, Position]) -> None:
        if not positions:
            return
        await self._positions.bulk_write(
            [
                UpdateOne(
                    {"_id": f"{tp[0]}:{tp[1]}"},
                    {"$set": {"offset": p.offset, "ce_id": p.ce_id, "topic": tp[0]}},
                    upsert=True,
                )
                for tp, p in positions.items()
            ],
            ordered=False,
        )


async def rewind(consumer: Any, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
    """Seek ``partitions`` of a live consumer back to the start of their log; returns
    those sought (the ones this consumer owns at the moment)."""
    tps = [KafkaPartition(topic, partition) for topic, partition in partitions]
    owned = set(consumer.assignment())
    tps = [tp for tp in tps if tp in owned]
    if tps:
        await consumer.seek_to_beginning(*tps)
    return {(tp.topic, tp.partition) for tp in tps}


class LogEndWatch:
    """Finds consumers stranded beyond the end of a partition's log, and rewinds them.

    A topic deleted and re-created (or a broker that lost its log) under a running
    consumer leaves it fetching at its old offset, past the new log's end. Kafka would
    answer that fetch with OFFSET_OUT_OF_RANGE (and the consumer would reset); Tansu
    answers with nothing, so the consumer waits there, silently, until the new log grows
    past its offset, and if it never does, nothing more is ever counted. No record
    arrives, so :class:`LogFence` (checked per batch) never runs: this check does, on a
    timer, from the consumer's position and the high watermark of its last fetch (in a
    healthy log the position never passes it). A stranded partition
    is logged, counted in ``commonground_log_resets_detected_total`` and sought to the
    start of its log; the fence and de-duplication by event id take it from there."""

    def __init__(self, component: str, resets: Counter) -> None:
        self._component = component
        self._resets = resets

    async def check(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        """Rewinds the partitions of ``consumer`` found beyond their log's end; returns them."""
        stranded: list[KafkaPartition] = []
        for tp in consumer.assignment():
            # The high watermark of the last fetch answered at this position. Not the
            # ListOffsets "latest" answer: Tansu gives the base offset of the last record
            # batch plus one there, below a healthy consumer's position.
            highwater = consumer.highwater(tp)
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
            except Exception:  # being reset or reassigned: next time
                continue
            if highwater is not None and position > highwater:
                stranded.append(tp)
                self._resets.labels(self._component, tp.topic, str(tp.partition)).inc()
                logger.error(
                    "%s: %s[%d] is read at offset %d but its log ends at %d: the log was "
                    "replaced (a topic re-created, a broker that lost its log); reading "
                    "it again from the beginning (events already applied are skipped by id)",
                    self._component,
                    tp.topic,
                    tp.partition,
                    position,
                    highwater,
                )
        return await rewind(consumer, [(tp.topic, tp.partition) for tp in stranded])

    async def run(self, consumers: Callable[[], Iterable[Any]], interval_s: float) -> None:
        """Check every consumer ``consumers()`` returns, every ``interval_s``, forever."""
        while True:
            await asyncio.sleep(interval_s)
            for consumer in consumers():
                try:
                    await self.check(consumer)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the broker restarting, a rebalance: next time
                    logger.info(
                        "%s: log ends not checked this time (%s)",
                        self._component,
                        type(exc).__name__,
                    )
