"""The projector service layer against an in-memory store: fencing, ce_id de-duplication,
poison isolation and retries."""

from __future__ import annotations

import pytest

from services.reporting.domain import projection
from services.reporting.domain.projection import AggregateKey
from services.reporting.entrypoints.kafka import CONSUMED
from services.reporting.use_cases.projector import Projector
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import AttendanceRecorded
from shared.dead_letters import RetryPolicy
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES
from tests.factories.dead_letters import RecordingDeadLetters
from tests.factories.reporting import (
    GM,
    MANCHESTER,
    FakeRecord,
    Pair,
    accepted,
    cloud,
    completed,
    record_of,
    ref_of,
)
from tests.unit.reporting.reporting_fakes import InMemoryStore

KEY: AggregateKey = ("outcomes", (GM.value, MANCHESTER, "esol", "entry_1", "2025-01"))
FAST = RetryPolicy(attempts=3, initial_delay_s=0.0)


def make() -> tuple[Projector, InMemoryStore, RecordingDeadLetters]:
    store, dlq = InMemoryStore(), RecordingDeadLetters()
    return Projector(store.unit_of_work, CONSUMED, dlq, retry_policy=FAST), store, dlq


def records(events: list[CloudEvent[Event]], first_offset: int = 0) -> list[FakeRecord]:
    return [record_of(ce, ENROLMENT_EVENTS, first_offset + i) for i, ce in enumerate(events)]


async def test_a_batch_is_applied_in_one_transaction() -> None:
    projector, store, _ = make()
    enrolments = [accepted() for _ in range(5)]
    batch = [cloud(e) for e in enrolments] + [cloud(completed(enrolments[0]))]
    report = await projector.handle(records(batch))
    assert (report.applied, store.transactions) == (6, 1)
    assert store.aggregates[KEY]["started"] == 5
    assert store.aggregates[KEY]["completed"] == 1
    assert store.stored_positions == {(ENROLMENT_EVENTS, 0): 5}


async def test_same_events_published_again_change_nothing() -> None:
    projector, store, _ = make()
    batch = [cloud(accepted()) for _ in range(4)]
    await projector.handle(records(batch))
    before = {k: dict(v) for k, v in store.aggregates.items()}
    # The same CloudEvents (same ce_id) at new offsets, e.g. a producer retry or a replay.
    report = await projector.handle(records(batch, first_offset=10))
    assert report.applied == 0 and report.duplicate_event_ids == 4
    assert store.aggregates == before
    assert store.stored_positions[(ENROLMENT_EVENTS, 0)] == 13


async def test_duplicates_inside_one_batch_count_once() -> None:
    projector, store, _ = make()
    ce = cloud(accepted())
    report = await projector.handle(records([ce, ce, ce]))
    assert (report.applied, report.duplicate_event_ids) == (1, 2)
    assert store.aggregates[KEY]["started"] == 1


async def test_redelivered_offsets_are_fenced_and_not_dead_lettered_again() -> None:
    projector, store, dlq = make()
    good = record_of(cloud(accepted()), ENROLMENT_EVENTS, 0)
    poison = FakeRecord(ENROLMENT_EVENTS, 0, 1, b"k", b"\x00 not json", ())
    await projector.handle([good, poison])
    assert len(dlq.sent) == 1
    report = await projector.handle([good, poison])  # e.g. after a rebalance
    assert report.duplicate_offsets == 2 and report.applied == 0
    assert len(dlq.sent) == 1
    assert store.aggregates[KEY]["started"] == 1


async def test_poison_records_are_dead_lettered_and_the_rest_applied() -> None:
    projector, store, dlq = make()
    e = accepted()
    outside = AttendanceRecorded(
        **{**ref_of(e), "local_authority": "E06000001"},
        period_start=e.start_date,
        period_end=e.start_date,
        sessions_planned=1,
        sessions_attended=1,
    )
    unknown_type = dict(cloud(e).headers(), ce_type="org.commonground.Nope.v1")
    batch = [
        record_of(cloud(e), ENROLMENT_EVENTS, 0),
        FakeRecord(ENROLMENT_EVENTS, 0, 1, b"k", b"{not json", ()),
        FakeRecord(
            ENROLMENT_EVENTS,
            0,
            2,
            b"k",
            cloud(e).body(),
            tuple((k, v.encode()) for k, v in unknown_type.items()),
        ),
        record_of(cloud(outside), ENROLMENT_EVENTS, 3),
        record_of(cloud(completed(e)), ENROLMENT_EVENTS, 4),
    ]
    report = await projector.handle(batch)
    assert (report.applied, report.poison) == (2, 3)
    assert [r.offset for r, _, _ in dlq.sent] == [1, 2, 3]
    assert {kind for _, kind, _ in dlq.sent} == {"poison"}
    assert "does not belong" in dlq.sent[2][2]
    assert store.aggregates[KEY]["completed"] == 1
    assert store.stored_positions[(ENROLMENT_EVENTS, 0)] == 4


async def test_an_event_that_fails_to_apply_is_dead_lettered_after_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    projector, store, dlq = make()
    e = accepted()
    pair = Pair(e)
    broken_id = pair.match_id
    real = projection.apply_to_match

    def flaky(state: projection.MatchState | None, event: object) -> projection.MatchState:
        if getattr(event, "match_id", None) == broken_id:
            raise KeyError("unexpected shape")
        return real(state, event)  # type: ignore[arg-type]

    monkeypatch.setattr(projection, "apply_to_match", flaky)
    batch = [
        record_of(cloud(e), ENROLMENT_EVENTS, 0),
        record_of(cloud(pair.confirmed(5)), MATCHING_MATCHES, 0),
        record_of(cloud(Pair(e).proposed()), MATCHING_MATCHES, 1),
    ]
    report = await projector.handle(batch)
    assert (report.applied, report.poison) == (2, 1)
    assert [(r.topic, r.offset) for r, _, _ in dlq.sent] == [(MATCHING_MATCHES, 0)]
    assert broken_id not in store.matches
    assert e.learner not in store.participants  # the confirmation applied wholly or not at all
    assert store.stored_positions[(MATCHING_MATCHES, 0)] == 1


async def test_a_transient_failure_retries_the_whole_batch_once_applied() -> None:
    projector, store, _ = make()
    store.fail_next_commits = 1
    await projector.handle(records([cloud(accepted()) for _ in range(3)]))
    assert store.aggregates[KEY]["started"] == 3
    assert store.transactions == 1


async def test_a_failure_outlasting_the_retries_propagates_so_the_batch_is_redelivered() -> None:
    projector, store, _ = make()
    store.fail_next_commits = 5
    batch = records([cloud(accepted()) for _ in range(2)])
    with pytest.raises(ConnectionError):
        await projector.handle(batch)
    assert store.aggregates == {}
    store.fail_next_commits = 0
    await projector.handle(batch)  # the broker redelivers after the nack
    assert store.aggregates[KEY]["started"] == 2


class CountingMetrics:
    def __init__(self) -> None:
        self.resets: list[tuple[str, int]] = []

    def batch(self, size: int) -> None:
        return None

    def applied(self, topic: str, count: int) -> None:
        return None

    def skipped(self, reason: str, count: int) -> None:
        return None

    def log_reset(self, topic: str, partition: int) -> None:
        self.resets.append((topic, partition))


async def test_a_new_log_is_applied_whatever_its_offsets_and_the_reset_is_reported() -> None:
    # The broker lost its log (or the topic was re-created): offsets start at 0 again
    # below the stored position. Positions never hide new events.
    store, dlq, metrics = InMemoryStore(), RecordingDeadLetters(), CountingMetrics()
    projector = Projector(store.unit_of_work, CONSUMED, dlq, retry_policy=FAST, metrics=metrics)
    await projector.handle(records([cloud(accepted()) for _ in range(10)]))
    assert store.stored_positions[(ENROLMENT_EVENTS, 0)] == 9

    report = await projector.handle(records([cloud(accepted()) for _ in range(3)]))
    assert report.applied == 3 and report.replaced_logs == 1
    assert store.aggregates[KEY]["started"] == 13
    assert metrics.resets == [(ENROLMENT_EVENTS, 0)]
    # The position starts again in the new log; later batches go on normally.
    assert store.stored_positions[(ENROLMENT_EVENTS, 0)] == 2
    report = await projector.handle(records([cloud(accepted()) for _ in range(2)], 3))
    assert report.applied == 2 and report.replaced_logs == 0
    assert store.aggregates[KEY]["started"] == 15


async def test_republished_events_in_a_new_log_count_once_and_new_ones_count() -> None:
    # After a log loss the producers re-publish from their outbox: the events the
    # reports already hold come again beside ones they never saw.
    projector, store, _ = make()
    seen = [cloud(accepted()) for _ in range(5)]
    await projector.handle(records(seen))
    unseen = [cloud(accepted()) for _ in range(2)]
    report = await projector.handle(records([*unseen, *seen]))
    assert report.applied == 2 and report.replaced_logs == 1
    assert store.aggregates[KEY]["started"] == 7
    # Had the new log happened to repeat the old one up to the position, nothing would
    # tell the logs apart, and nothing would need to: the counts are right either way.
    again = [cloud(accepted())]
    report = await projector.handle(records([*seen, *unseen, *again]))
    assert report.applied == 1 and store.aggregates[KEY]["started"] == 8


async def test_another_event_at_the_stored_offset_reveals_a_replaced_log() -> None:
    projector, _, _ = make()
    first = [cloud(accepted()) for _ in range(3)]
    await projector.handle(records(first))
    # The new log holds the first two again, then something else at offset 2.
    other = cloud(completed(first[0].data))  # type: ignore[arg-type]
    report = await projector.handle(records([first[0], first[1], other]))
    assert report.replaced_logs == 1 and report.applied == 1


async def test_poison_below_the_position_of_a_replaced_log_is_dead_lettered() -> None:
    projector, _, dlq = make()
    await projector.handle(records([cloud(accepted()) for _ in range(5)]))
    poison = FakeRecord(ENROLMENT_EVENTS, 0, 1, b"k", b"\x00 not json", ())
    fresh = record_of(cloud(accepted()), ENROLMENT_EVENTS, 0)
    report = await projector.handle([fresh, poison])
    assert report.poison == 1 and len(dlq.sent) == 1 and report.applied == 1
