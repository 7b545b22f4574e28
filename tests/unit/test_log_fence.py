"""shared.positions.LogFence: a consumer never reads a new log as the old one."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import TopicPartition as KafkaPartition

from services.reporting.entrypoints.kafka import CONSUMED
from services.reporting.use_cases.projector import Projector
from shared.dead_letters import RetryPolicy
from shared.positions import (
    Anchor,
    LogEndWatch,
    LogFence,
    Position,
    TopicPartition,
    log_resets_counter,
)
from shared.telemetry import Telemetry
from shared.topics import ENROLMENT_EVENTS
from tests.factories.dead_letters import RecordingDeadLetters
from tests.factories.reporting import accepted, cloud, record_of
from tests.unit.reporting.reporting_fakes import InMemoryStore

TP: TopicPartition = (ENROLMENT_EVENTS, 0)


class Probe:
    def __init__(self, gone: bool) -> None:
        self.gone = gone
        self.asked: list[Anchor] = []

    async def replaced(self, anchors: Sequence[Anchor]) -> list[Anchor]:
        self.asked.extend(anchors)
        return list(anchors) if self.gone else []

    async def close(self) -> None:
        return None


def fence(probe: Probe | None = None) -> tuple[LogFence, Telemetry]:
    telemetry = Telemetry(service_name="fence-unit")
    return LogFence("unit", log_resets_counter(telemetry), probe), telemetry


def resets(telemetry: Telemetry) -> float:
    labels = {"component": "unit", "topic": ENROLMENT_EVENTS, "partition": "0"}
    return (
        telemetry.registry.get_sample_value("commonground_log_resets_detected_total", labels) or 0
    )


async def test_records_that_skip_past_the_stored_position_come_from_another_log() -> None:
    f, telemetry = fence()
    assert await f.replaced({TP: 11}, {TP: Position(10, "e10")}) == set()  # the next one
    assert await f.replaced({TP: 5}, {TP: Position(10, "e10")}) == set()  # a redelivery
    assert await f.replaced({TP: 40}, {TP: Position(10, "e10")}) == {TP}  # a gap
    assert resets(telemetry) == 1


async def test_every_batch_right_after_the_position_is_checked_against_the_broker() -> None:
    probe = Probe(gone=True)
    f, telemetry = fence(probe)
    assert await f.replaced({TP: 11}, {TP: Position(10, "e10")}) == {TP}
    assert [a.ce_id for a in probe.asked] == ["e10"] and resets(telemetry) == 1
    # Not only on resuming: a topic re-created under a running consumer shows no gap
    # once the new log has grown past the old position.
    assert await f.replaced({TP: 12}, {TP: Position(11, "e11")}) == {TP}
    assert [a.ce_id for a in probe.asked] == ["e10", "e11"] and resets(telemetry) == 2


async def test_a_gap_is_decided_by_the_log_not_taken_as_proof() -> None:
    # Tansu can leave offsets unused after a restart, and another instance may have moved
    # the position on: rewinding on every gap looped for ever. The record at the position
    # decides.
    same = Probe(gone=False)
    f, telemetry = fence(same)
    assert await f.replaced({TP: 40}, {TP: Position(10, "e10")}) == set()
    assert [a.offset for a in same.asked] == [10] and resets(telemetry) == 0
    replaced = Probe(gone=True)
    f, telemetry = fence(replaced)
    assert await f.replaced({TP: 40}, {TP: Position(10, "e10")}) == {TP}
    assert resets(telemetry) == 1


async def test_the_same_log_is_left_alone_and_a_fresh_position_needs_no_check() -> None:
    probe = Probe(gone=False)
    f, _ = fence(probe)
    assert await f.replaced({TP: 11}, {TP: Position(10, "e10")}) == set()
    assert (
        await f.replaced({(ENROLMENT_EVENTS, 1): 500}, {(ENROLMENT_EVENTS, 1): Position(-1)})
        == set()
    )
    assert await f.replaced({(ENROLMENT_EVENTS, 2): 7}, {}) == set()
    assert len(probe.asked) == 1


async def test_the_projector_rewinds_a_replaced_partition_and_reads_it_again() -> None:
    store, dlq = InMemoryStore(), RecordingDeadLetters()
    f, _ = fence()
    projector = Projector(
        store.unit_of_work,
        CONSUMED,
        dlq,
        retry_policy=RetryPolicy(attempts=2, initial_delay_s=0.0),
        fence=f,
    )
    rewound: list[set[TopicPartition]] = []

    async def rewind(partitions: set[TopicPartition]) -> set[TopicPartition]:
        rewound.append(partitions)
        return partitions

    first = [cloud(accepted()) for _ in range(3)]
    await projector.handle(
        [record_of(ce, ENROLMENT_EVENTS, i) for i, ce in enumerate(first)], rewind
    )
    # The topic was re-created while the consumer kept its place: the next records it
    # fetches sit far beyond its position, and everything before them is unread.
    later = [cloud(accepted()) for _ in range(2)]
    report = await projector.handle(
        [record_of(ce, ENROLMENT_EVENTS, 100 + i) for i, ce in enumerate(later)], rewind
    )
    assert rewound == [{TP}] and report.applied == 0 and report.rewound == 1
    assert store.positions[TP] == Position(-1)
    # Read again from the start of the new log: everything is applied once.
    again = [cloud(accepted()) for _ in range(4)] + later
    report = await projector.handle(
        [record_of(ce, ENROLMENT_EVENTS, i) for i, ce in enumerate(again)], rewind
    )
    assert report.applied == 6 and rewound == [{TP}]
    assert store.positions[TP].offset == 5


async def test_a_partition_that_could_not_be_sought_keeps_its_position() -> None:
    # Mid-rebalance the consumer owns nothing: the partition cannot be sought, so its
    # position must keep fencing it (reset to -1 it would let the next owner skip).
    store, dlq = InMemoryStore(), RecordingDeadLetters()
    f, _ = fence()
    projector = Projector(
        store.unit_of_work,
        CONSUMED,
        dlq,
        retry_policy=RetryPolicy(attempts=2, initial_delay_s=0.0),
        fence=f,
    )

    async def not_owned(partitions: set[TopicPartition]) -> set[TopicPartition]:
        return set()

    first = [cloud(accepted()) for _ in range(3)]
    await projector.handle(
        [record_of(ce, ENROLMENT_EVENTS, i) for i, ce in enumerate(first)], not_owned
    )
    report = await projector.handle(
        [record_of(cloud(accepted()), ENROLMENT_EVENTS, 100)], not_owned
    )
    assert report.rewound == 1 and report.applied == 0
    assert store.positions[TP].offset == 2


class StrandedConsumer:
    """An aiokafka consumer's surface as LogEndWatch uses it."""

    def __init__(self, positions: dict[KafkaPartition, int], ends: dict[KafkaPartition, int]):
        self.positions = positions
        self.ends = ends  # high watermarks of the last fetches
        self.sought: list[KafkaPartition] = []

    def assignment(self) -> set[KafkaPartition]:
        return set(self.positions)

    async def position(self, tp: KafkaPartition) -> int:
        return self.positions[tp]

    def highwater(self, tp: KafkaPartition) -> int | None:
        return self.ends.get(tp)

    async def seek_to_beginning(self, *tps: KafkaPartition) -> None:
        self.sought.extend(tps)


async def test_a_consumer_left_beyond_a_new_logs_end_is_rewound_and_counted() -> None:
    # Tansu answers a fetch beyond a log's end with nothing: no record comes, so only a
    # timer can notice (the fence runs per batch).
    telemetry = Telemetry(service_name="log-end-unit")
    watch = LogEndWatch("unit", log_resets_counter(telemetry))
    replaced, caught_up = KafkaPartition(ENROLMENT_EVENTS, 0), KafkaPartition(ENROLMENT_EVENTS, 1)
    consumer = StrandedConsumer({replaced: 760, caught_up: 40}, {replaced: 12, caught_up: 40})
    assert await watch.check(consumer) == {TP}
    assert consumer.sought == [replaced]
    assert resets(telemetry) == 1
