"""The projection service layer: one consumed batch in, read models updated exactly once.

For each batch of Kafka records (both topics, any partitions):

1. records are decoded; poison (not a CloudEvent, unknown type, schema-invalid, or an
   event reporting cannot use) is dead-lettered at once (once: poison at or below the
   stored position of its partition's log was dead-lettered before) and the others go on;
2. in one MongoDB transaction (the unit of work, :meth:`Projector._apply`): drop events
   whose ``ce_id`` was already applied (a redelivery, a re-published or replayed event
   changes nothing: de-duplication is by event id, never by offset, see
   ``shared.positions``), detect a partition whose log was replaced (logged, counted,
   alerted on), load the states the batch touches, pre-aggregate the batch in memory
   (:func:`project_batch`), write states, one bulk ``$inc`` per aggregate collection,
   the new event ids and positions;
3. only then may the caller commit the Kafka offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from services.reporting.domain.projection import (
    BatchOutcome,
    InvalidEvent,
    is_consumed,
    keys_needed,
    project_batch,
    validate_event,
)
from services.reporting.repository import TopicPartition, UnitOfWork
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


@dataclass
class _Batch:
    """A batch ready for its transaction: fenced, decoded, poison dead-lettered."""

    partitions: set[TopicPartition]
    # (partition, offset, ce_id) of every record, for the positions written after.
    coordinates: list[tuple[TopicPartition, int, str | None]]
    decoded: list[_Decoded]  # the events to project (key events taken out)
    rewound: set[TopicPartition]  # replaced logs found by the fence
    sought: set[TopicPartition]  # the rewound partitions the consumer could seek
    report: BatchReport  # what was counted before the transaction


@dataclass
class _Applied:
    """What the transaction did, acted on once it has committed."""

    report: BatchReport
    failed: list[tuple[_Decoded, Exception]]
    replaced: set[TopicPartition]


def _seen(decoded: Sequence[_Decoded]) -> list[Seen]:
    return [Seen(d.record.topic, d.record.partition, d.record.offset, d.ce_id) for d in decoded]


def _offset(positions: Mapping[TopicPartition, Position], record: RecordLike) -> int:
    position = positions.get((record.topic, record.partition))
    return position.offset if position else -1


class Projector:
    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
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
        self._unit_of_work = unit_of_work
        self._registry = registry
        self._dead_letters = dead_letters
        self._metrics = metrics or _NoMetrics()
        self._retry = retry_policy or RetryPolicy()

    async def handle(
        self, records: Sequence[RecordLike], rewind: Rewind | None = None
    ) -> BatchReport:
        """Apply one batch. ``rewind`` seeks partitions of the live consumer back to the
        start of their log (given by the subscriber; without it no partition is
        rewound, e.g. when a batch is retried record by record)."""
        if not records:
            return BatchReport()
        self._metrics.batch(len(records))
        batch = await self._prepare(records, rewind)

        async def apply_batch(uow: UnitOfWork) -> _Applied:
            return await self._apply(uow, batch)

        applied = await retrying(lambda: self._unit_of_work().run(apply_batch), self._retry)
        return await self._after_commit(applied, batch.rewound)

    async def _prepare(self, records: Sequence[RecordLike], rewind: Rewind | None) -> _Batch:
        """Outside the transaction: fence replaced logs, decode, dead-letter new poison
        and open sealed fields (read from committed data: the transaction re-checks)."""
        report = BatchReport(records=len(records))
        partitions = {(r.topic, r.partition) for r in records}
        committed = self._unit_of_work()
        stored = await retrying(lambda: committed.positions.get(partitions), self._retry)
        records, rewound, sought = await self._rewind_replaced(records, stored, rewind, report)
        decoded, poison, coordinates = self._decode(records, report)
        if poison:
            await self._dead_letter_new_poison(committed, poison, decoded, stored, report)
        decoded = await self._open_sealed(decoded)
        events = [d for d in decoded if not isinstance(d.event, LearnerKeyIssued)]
        report.ignored += len(decoded) - len(events)
        return _Batch(partitions, coordinates, events, rewound, sought, report)

    async def _rewind_replaced(
        self,
        records: Sequence[RecordLike],
        stored: Mapping[TopicPartition, Position],
        rewind: Rewind | None,
        report: BatchReport,
    ) -> tuple[Sequence[RecordLike], set[TopicPartition], set[TopicPartition]]:
        """The partitions the fence finds reading another log are sought back to its
        start and their records dropped; returns the records left, the partitions
        found and those sought."""
        if rewind is None or self._fence is None:
            return records, set(), set()
        rewound = await self._fence.replaced(first_offsets(records), stored)
        if not rewound:
            return records, rewound, set()
        sought = await rewind(rewound)
        report.replaced_logs += len(rewound)
        report.rewound = len(rewound)
        return [r for r in records if (r.topic, r.partition) not in rewound], rewound, sought

    def _decode(
        self, records: Sequence[RecordLike], report: BatchReport
    ) -> tuple[
        list[_Decoded],
        list[tuple[RecordLike, Exception]],
        list[tuple[TopicPartition, int, str | None]],
    ]:
        """The events reporting uses (and key events), the poison, and every record's
        coordinates; events of other types are counted as ignored."""
        decoded: list[_Decoded] = []
        poison: list[tuple[RecordLike, Exception]] = []
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
        return decoded, poison, coordinates

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
        committed: UnitOfWork,
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
            known = await retrying(lambda: committed.applied_events.known(ids), self._retry)
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

    async def _apply(self, uow: UnitOfWork, batch: _Batch) -> _Applied:
        """The transaction: leave out the events already applied, project the rest onto
        the states they touch, and write states, counters, event ids and positions."""
        # A retried attempt starts again from the counts made before the transaction.
        report = replace(batch.report, applied_by_topic={})
        positions = await uow.positions.get(batch.partitions)
        to_apply, known = await self._new_events(uow, batch.decoded, positions, report)
        replaced = replaced_logs(_seen(batch.decoded), positions, known)
        outcome, failed = await self._project(uow, to_apply, report)
        advanced = advanced_positions(batch.coordinates, positions, replaced)
        # A rewound partition is read again from the start of its (new) log. One that
        # could not be sought (not owned mid-rebalance) keeps its position, so the fence
        # checks it again when its records come next.
        advanced.update({tp: Position(-1) for tp in batch.sought})
        await self._write(uow, outcome, [d.ce_id for d in to_apply], advanced)
        return _Applied(report, failed, replaced)

    @staticmethod
    async def _new_events(
        uow: UnitOfWork,
        decoded: list[_Decoded],
        positions: Mapping[TopicPartition, Position],
        report: BatchReport,
    ) -> tuple[list[_Decoded], set[str]]:
        """The events never applied, each once, and the ids of those that were; counts
        the others as redelivered offsets or duplicate event ids."""
        # De-duplication is by event id only: offsets restart in a new log.
        unique: dict[str, _Decoded] = {}
        for d in decoded:
            unique.setdefault(d.ce_id, d)
        known = await uow.applied_events.known(list(unique))
        to_apply = [d for ce_id, d in unique.items() if ce_id not in known]
        redelivered = sum(
            1
            for d in decoded
            if d.ce_id in known and d.record.offset <= _offset(positions, d.record)
        )
        report.duplicate_offsets += redelivered
        report.duplicate_event_ids = len(decoded) - len(to_apply) - redelivered
        return to_apply, known

    @staticmethod
    async def _project(
        uow: UnitOfWork, to_apply: list[_Decoded], report: BatchReport
    ) -> tuple[BatchOutcome, list[tuple[_Decoded, Exception]]]:
        """Pre-aggregate the events onto the states they touch; those that fail to apply
        are left out (and returned), the others counted as applied."""
        events = [d.event for d in to_apply]
        outcome = project_batch(await uow.states.load(keys_needed(events)), events)
        failed = [(to_apply[i], exc) for i, exc in outcome.failed]
        failed_ids = {id(d) for d, _ in failed}
        for d in to_apply:
            if id(d) not in failed_ids:
                report.applied += 1
                topic = d.record.topic
                report.applied_by_topic[topic] = report.applied_by_topic.get(topic, 0) + 1
        return outcome, failed

    @staticmethod
    async def _write(
        uow: UnitOfWork,
        outcome: BatchOutcome,
        event_ids: list[str],
        positions: Mapping[TopicPartition, Position],
    ) -> None:
        """One bulk write per collection touched: states, counters, event ids, positions."""
        await uow.states.save(outcome)
        await uow.aggregates.add(outcome)
        await uow.applied_events.add(event_ids, at=uow.now)
        await uow.positions.advance(positions)

    async def _after_commit(self, applied: _Applied, rewound: set[TopicPartition]) -> BatchReport:
        """Dead-letter the events that failed to apply, report replaced logs, count."""
        final = applied.report
        # Events that failed to apply are recorded as seen (so never re-applied) and
        # dead-lettered after the commit; the rest of the batch has been applied.
        for d, error in applied.failed:
            final.poison += 1
            logger.error("event %s could not be applied: %s", d.ce_id, type(error).__name__)
            await self._dead_letters.send(d.record, error, kind="poison")
        for topic, partition in sorted(applied.replaced - rewound):
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
