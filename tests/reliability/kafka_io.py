"""Kafka from the outside: publishing CloudEvents in binary mode, reading whole topics,
end offsets and a group's committed offsets, resetting a group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.cloudevents import CloudEvent, EnvelopeError, Event, EventRegistry
from shared.contracts.matching import MatchRef
from shared.contracts.registry import registry_for
from shared.topics import (
    ENROLMENT_EVENTS,
    MATCHING_MATCHES,
)

REPORTING_CONSUMES = (ENROLMENT_EVENTS, MATCHING_MATCHES)
REPORTED = registry_for(ENROLMENT_EVENTS, MATCHING_MATCHES)


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
