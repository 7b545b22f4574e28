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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter

from shared.telemetry import Telemetry

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
