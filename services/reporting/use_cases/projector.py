"""The projection service layer: one consumed batch in, read models updated exactly once.

For each batch of Kafka records (both topics, any partitions):

1. records are decoded; poison (not a CloudEvent, unknown type, schema-invalid, or an
   event reporting cannot use) is dead-lettered at once (once: poison at or below the
   stored position of its partition's log was dead-lettered before) and the others go on;
2. in one MongoDB transaction: drop events whose ``ce_id`` was already applied (a
   redelivery, a re-published or replayed event changes nothing: de-duplication is by
   event id, never by offset, see ``shared.positions``), detect a partition whose log
   was replaced (logged, counted, alerted on), load the states the batch touches,
   pre-aggregate the batch in memory (:func:`project_batch`), write states, one bulk
   ``$inc`` per aggregate collection, the new event ids and positions;
3. only then may the caller commit the Kafka offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.reporting.domain.projection import (
    InvalidEvent,
    is_consumed,
    keys_needed,
    project_batch,
    validate_event,
)
from services.reporting.repository import ProjectionStore, ProjectionTx, TopicPartition
from shared.cloudevents import EnvelopeError, Event, EventRegistry
from shared.contracts.enrolment import LearnerKeyIssued
from shared.crypto import KeyRing
from shared.dead_letters import RecordLike, RetryPolicy, retrying
from shared.learner_keys import KeyBatch, MongoLearnerKeys
from shared.positions import (
    LogFence,
    Position,
    Seen,
    advanced_positions,
    first_offsets,
    replaced_logs,
)

logger = logging.getLogger(__name__)


# Seeks partitions of the live consumer back to their start; returns those it could seek
# (a partition not owned at that moment, mid-rebalance, is left as it is).
Rewind = Callable[[set[TopicPartition]], Awaitable[set[TopicPartition]]]


class DeadLetterSink(Protocol):
    async def send(self, record: RecordLike, error: BaseException, *, kind: str) -> None: ...


class ProjectionMetrics(Protocol):
    def batch(self, size: int) -> None: ...
    def applied(self, topic: str, count: int) -> None: ...
    def skipped(self, reason: str, count: int) -> None: ...
    def log_reset(self, topic: str, partition: int) -> None: ...


class _NoMetrics:
    def batch(self, size: int) -> None:
        return None

    def applied(self, topic: str, count: int) -> None:
        return None

    def skipped(self, reason: str, count: int) -> None:
        return None

    def log_reset(self, topic: str, partition: int) -> None:
        return None


@dataclass(frozen=True)
class _Decoded:
    record: RecordLike
    ce_id: str
    event: Event


@dataclass
class BatchReport:
    """What one batch did (also returned for tests and the rebuild's progress)."""

    records: int = 0
    applied: int = 0
    duplicate_offsets: int = 0
    duplicate_event_ids: int = 0
    ignored: int = 0
    poison: int = 0
    replaced_logs: int = 0
    rewound: int = 0
    applied_by_topic: dict[str, int] = field(default_factory=dict)


def _seen(decoded: Sequence[_Decoded]) -> list[Seen]:
    return [Seen(d.record.topic, d.record.partition, d.record.offset, d.ce_id) for d in decoded]


def _offset(positions: Mapping[TopicPartition, Position], record: RecordLike) -> int:
    position = positions.get((record.topic, record.partition))
    return position.offset if position else -1


class Projector:
    def __init__(
        self,
        store: ProjectionStore,
        registry: EventRegistry,
        dead_letters: DeadLetterSink,
        *,
        metrics: ProjectionMetrics | None = None,
        retry_policy: RetryPolicy | None = None,
        learner_keys: MongoLearnerKeys | None = None,
        key_ring: KeyRing | None = None,
        fence: LogFence | None = None,
    ) -> None:
        self._fence = fence
        self._learner_keys = learner_keys
        self._key_ring = key_ring
        self._store = store
        self._registry = registry
        self._dead_letters = dead_letters
        self._metrics = metrics or _NoMetrics()
        self._retry = retry_policy or RetryPolicy()

    async def _open_sealed(self, decoded: list[_Decoded]) -> list[_Decoded]:
        """Crypto-shredding: apply the batch's key events (kept in this service's own
        ``learner_keys``; erasures recorded for good) in log order, and open sealed
        personal fields with them. An erased learner's events come back anonymous.
        Key writes are idempotent, so they happen before the projection transaction."""
        if self._learner_keys is None or self._key_ring is None or not decoded:
            return decoded
        store, ring = self._learner_keys, self._key_ring
        events = [d.event for d in decoded]
        keys = await retrying(lambda: KeyBatch.load(store, ring, events), self._retry)
        opened = []
        for d in decoded:
            keys.note(d.event)
            opened.append(_Decoded(d.record, d.ce_id, keys.reveal(d.event)))
        await retrying(lambda: keys.save(store), self._retry)
        return opened

    async def _dead_letter_new_poison(
        self,
        poison: list[tuple[RecordLike, Exception]],
        decoded: list[_Decoded],
        stored: Mapping[TopicPartition, Position],
        report: BatchReport,
    ) -> None:
        """Dead-letter poison once: a poison record at or below its partition's stored
        position was dead-lettered when first seen, unless that position belongs to a
        log that has since been replaced (read outside the transaction: a hint)."""
        replaced: set[TopicPartition] = set()
        if any(r.offset <= _offset(stored, r) for r, _ in poison):
            ids = [d.ce_id for d in decoded]
            known = await retrying(lambda: self._store.read_known_event_ids(ids), self._retry)
            replaced = replaced_logs(_seen(decoded), stored, known)
            if any(
                r.offset == stored[(r.topic, r.partition)].offset
                and stored[(r.topic, r.partition)].ce_id is not None
                for r, _ in poison
                if (r.topic, r.partition) in stored
            ):
                # An event's place now holds poison: another log.
                replaced |= {
                    (r.topic, r.partition)
                    for r, _ in poison
                    if (r.topic, r.partition) in stored
                    and r.offset == stored[(r.topic, r.partition)].offset
                    and stored[(r.topic, r.partition)].ce_id is not None
                }
        for record, exc in poison:
            tp = (record.topic, record.partition)
            if record.offset <= _offset(stored, record) and tp not in replaced:
                report.duplicate_offsets += 1
                continue
            report.poison += 1
            await self._dead_letters.send(record, exc, kind="poison")

    async def handle(
        self, records: Sequence[RecordLike], rewind: Rewind | None = None
    ) -> BatchReport:
        """Apply one batch. ``rewind`` seeks partitions of the live consumer back to the
        start of their log (given by the subscriber; without it no partition is
        rewound, e.g. when a batch is retried record by record)."""
        report = BatchReport(records=len(records))
        if not records:
            return report
        self._metrics.batch(len(records))
        partitions = {(r.topic, r.partition) for r in records}
        stored = await retrying(lambda: self._store.read_positions(partitions), self._retry)
        rewound: set[TopicPartition] = set()
        sought: set[TopicPartition] = set()
        if rewind is not None and self._fence is not None:
            rewound = await self._fence.replaced(first_offsets(records), stored)
            if rewound:
                sought = await rewind(rewound)
                report.replaced_logs += len(rewound)
                records = [r for r in records if (r.topic, r.partition) not in rewound]
                report.rewound = len(rewound)

        decoded: list[_Decoded] = []
        poison: list[tuple[RecordLike, Exception]] = []
        # (partition, offset, ce_id) of every record, for the positions written after.
        coordinates: list[tuple[TopicPartition, int, str | None]] = []
        for record in records:
            try:
                cloud_event = self._registry.decode(record.value or b"", dict(record.headers or ()))
                validate_event(cloud_event.data)
            except (EnvelopeError, InvalidEvent) as exc:
                poison.append((record, exc))
                coordinates.append(((record.topic, record.partition), record.offset, None))
                continue
            coordinates.append(((record.topic, record.partition), record.offset, cloud_event.id))
            if not is_consumed(cloud_event.data) and not isinstance(
                cloud_event.data, LearnerKeyIssued
            ):
                report.ignored += 1
                continue
            decoded.append(_Decoded(record, cloud_event.id, cloud_event.data))
        if poison:
            await self._dead_letter_new_poison(poison, decoded, stored, report)

        decoded = await self._open_sealed(decoded)
        keys_only = [d for d in decoded if isinstance(d.event, LearnerKeyIssued)]
        report.ignored += len(keys_only)
        decoded = [d for d in decoded if not isinstance(d.event, LearnerKeyIssued)]
        failed: list[tuple[_Decoded, Exception]] = []
        replaced: set[TopicPartition] = set()

        async def work(tx: ProjectionTx) -> BatchReport:
            failed.clear()
            replaced.clear()
            result = BatchReport(
                records=report.records,
                ignored=report.ignored,
                poison=report.poison,
                duplicate_offsets=report.duplicate_offsets,
                replaced_logs=report.replaced_logs,
                rewound=report.rewound,
            )
            positions = await tx.positions(partitions)
            # De-duplication is by event id only: offsets restart in a new log.
            unique: dict[str, _Decoded] = {}
            for d in decoded:
                unique.setdefault(d.ce_id, d)
            known = await tx.known_event_ids(list(unique))
            replaced.update(replaced_logs(_seen(decoded), positions, known))
            to_apply = [d for ce_id, d in unique.items() if ce_id not in known]
            redelivered = sum(
                1
                for d in decoded
                if d.ce_id in known and d.record.offset <= _offset(positions, d.record)
            )
            result.duplicate_offsets += redelivered
            result.duplicate_event_ids = len(decoded) - len(to_apply) - redelivered

            events = [d.event for d in to_apply]
            loaded = await tx.load(keys_needed(events))
            outcome = project_batch(loaded, events)
            failed.extend((to_apply[i], exc) for i, exc in outcome.failed)
            failed_ids = {id(d) for d, _ in failed}
            for d in to_apply:
                if id(d) not in failed_ids:
                    result.applied += 1
                    topic = d.record.topic
                    result.applied_by_topic[topic] = result.applied_by_topic.get(topic, 0) + 1
            advanced = advanced_positions(coordinates, positions, replaced)
            # A rewound partition is read again from the start of its (new) log. One that
            # could not be sought (not owned mid-rebalance) keeps its position, so the
            # fence checks it again when its records come next.
            advanced.update({tp: Position(-1) for tp in sought})
            await tx.write(outcome, advanced, [d.ce_id for d in to_apply])
            return result

        final = await retrying(lambda: self._store.run(work), self._retry)
        # Events that failed to apply are recorded as seen (so never re-applied) and
        # dead-lettered after the commit; the rest of the batch has been applied.
        for d, error in failed:
            final.poison += 1
            logger.error("event %s could not be applied: %s", d.ce_id, type(error).__name__)
            await self._dead_letters.send(d.record, error, kind="poison")
        for topic, partition in sorted(replaced - rewound):
            final.replaced_logs += 1
            self._metrics.log_reset(topic, partition)
            logger.error(
                "reporting: %s[%d] holds another log than the one its position was recorded "
                "in (the broker lost its log, or the topic was re-created); its events are "
                "applied by event id and the position starts again in the new log",
                topic,
                partition,
            )
        for topic, count in final.applied_by_topic.items():
            self._metrics.applied(topic, count)
        self._metrics.skipped("duplicate_offset", final.duplicate_offsets)
        self._metrics.skipped("duplicate_event_id", final.duplicate_event_ids)
        self._metrics.skipped("ignored_type", final.ignored)
        return final
