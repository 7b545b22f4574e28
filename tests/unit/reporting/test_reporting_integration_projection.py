"""The projection behind the integration reports (issue 16): lasting bridges, who waits
by group, ESOL progression time. Pure: events in, states and aggregate deltas out."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest

from services.reporting.domain.integration_facts import ACTIVITY_WINDOW_DAYS, met_in_window
from services.reporting.domain.projection import (
    AggregateKey,
    Counts,
    LoadedStates,
    ck,
    project_batch,
    record_key,
)
from shared.cloudevents import Event
from shared.contracts.enrolment import LearnerErased
from shared.contracts.reference import AgeBand, Ethnicity, Level, Programme, Sex
from tests.factories.reporting import (
    GM,
    MANCHESTER,
    Pair,
    accepted,
    assessed,
    completed,
    opted_in,
)

START = date(2025, 1, 10)


def deltas(events: list[Event]) -> dict[AggregateKey, Counts]:
    out = project_batch(LoadedStates(), events)
    assert not out.failed, out.failed
    return out.deltas


def bridges(events: list[Event]) -> Counts:
    found = [c for (name, _), c in deltas(events).items() if name == "bridges"]
    assert len(found) <= 1
    return found[0] if found else {}


def test_the_activity_window_ends_on_the_mark() -> None:
    start = date(2025, 1, 1)
    assert met_in_window(start, date(2025, 2, 12), 42)  # day 42
    assert met_in_window(start, date(2025, 1, 15), 42)  # day 14 = 42 - 28
    assert not met_in_window(start, date(2025, 1, 14), 42)  # day 13: before the window
    assert not met_in_window(start, date(2025, 2, 13), 42)  # day 43: after the mark
    assert ACTIVITY_WINDOW_DAYS == 28


@pytest.mark.parametrize(
    ("meetings", "ended_after", "cross", "expected"),
    [
        ((20, 40), None, True, {"6w": 1, "6m": 0}),  # met up to week 6, then nothing
        ((40, 170), None, True, {"6w": 1, "6m": 1}),  # still meeting at six months
        ((5, 10), None, True, {"6w": 0, "6m": 0}),  # stopped early: lapsed by week 6
        ((40,), 30, True, {"6w": 0, "6m": 0}),  # ended on day 30, before the 6-week mark
        ((40, 170), 100, True, {"6w": 1, "6m": 0}),  # ended on day 100
        ((40, 170), None, False, {"6w": 0, "6m": 0}),  # not cross-background: not a bridge
        ((), None, True, {"6w": 0, "6m": 0}),  # no meetings recorded at all
    ],
)
def test_a_cross_background_match_counts_as_active_at_a_mark_only_while_meeting(
    meetings: tuple[int, ...], ended_after: int | None, cross: bool, expected: dict[str, int]
) -> None:
    pair = Pair(accepted(start=START))
    events: list[Event] = [pair.proposed(), pair.confirmed(3, cross_background=cross)]
    events += [pair.checked_in(3, day) for day in meetings]
    if ended_after is not None:
        events.append(pair.ended(3 + ended_after))
    counts = bridges(events)
    assert counts["confirmed"] == 1
    assert counts.get("cross_confirmed", 0) == int(cross)
    assert counts.get("cross_active_6w", 0) == expected["6w"]
    assert counts.get("cross_active_6m", 0) == expected["6m"]
    key = record_key("match", pair.match_id)
    assert counts.get(ck("confirmed"), 0) == key  # (zeros are dropped: key 0 is absent)
    assert counts.get(ck("cross_active_6w"), 0) == key * expected["6w"]


def test_bridges_sit_in_the_month_of_confirmation_whatever_order_events_come_in() -> None:
    pair = Pair(accepted(start=date(2025, 1, 25)))
    events: list[Event] = [
        pair.proposed(),
        pair.confirmed(10),  # 4 February
        pair.checked_in(10, 30),
        pair.checked_in(10, 175),
    ]
    key: AggregateKey = ("bridges", (GM.value, MANCHESTER, "2025-02"))
    for order in itertools.permutations(events):
        d = deltas(list(order))
        assert (d[key]["cross_confirmed"], d[key]["cross_active_6w"]) == (1, 1)
        assert d[key]["cross_active_6m"] == 1


def test_waiting_groups_count_participants_by_age_sex_and_ethnic_group() -> None:
    asian = accepted(start=START, ethnicity=Ethnicity.ASIAN_PAKISTANI)
    unknown = accepted(start=START)
    pair = Pair(asian)
    events: list[Event] = [
        asian,
        unknown,
        opted_in(asian, age_band=AgeBand.AGE_50_64, sex=Sex.FEMALE),
        opted_in(unknown, age_band=AgeBand.AGE_19_24),
        pair.proposed(),
        pair.confirmed(12),
    ]
    out = project_batch(LoadedStates(), events)
    groups = {key: c for (name, key), c in out.deltas.items() if name == "waiting_groups"}
    where = (GM.value, MANCHESTER, "2025-01")
    matched = groups[(*where, "50-64", "F", "asian")]
    waiting = groups[(*where, "19-24", "not_stated", "not_stated")]
    assert (matched["opted_in"], matched.get("waiting", 0), matched["matched"]) == (1, 0, 1)
    assert (waiting["opted_in"], waiting["waiting"], waiting.get("matched", 0)) == (1, 1, 0)
    assert waiting.get(ck("waiting"), 0) == record_key("learner", unknown.learner)
    state = out.participants[asian.learner]
    assert state.first_wait_days == 12.0 and state.ethnic_group == "asian"
    # Only the high-level group is kept, never the 19 categories.
    assert "asian_pakistani" not in str(state)


def test_the_first_confirmed_match_decides_the_wait_whatever_order() -> None:
    e = accepted(start=START)
    first, second = Pair(e), Pair(e)
    events: list[Event] = [opted_in(e), first.confirmed(5), second.confirmed(40)]
    for order in itertools.permutations(events):
        state = project_batch(LoadedStates(), list(order)).participants[e.learner]
        assert state.first_wait_days == 5.0 and state.matched


def test_erasure_removes_the_participants_ethnic_group_as_it_does_the_enrolments() -> None:
    e = accepted(start=START, ethnicity=Ethnicity.BLACK_AFRICAN)
    before = project_batch(LoadedStates(), [e, opted_in(e)])
    loaded = LoadedStates(
        enrolments=dict(before.enrolments), participants=dict(before.participants)
    )
    after = project_batch(
        loaded,
        [LearnerErased(learner=e.learner, erased_at=datetime(2025, 6, 1, tzinfo=UTC))],
    )
    assert after.participants[e.learner].ethnic_group is None
    moved = {key[-1]: c for (name, key), c in after.deltas.items() if name == "waiting_groups"}
    assert moved["black"]["opted_in"] == -1 and moved["not_stated"]["opted_in"] == 1


def test_esol_progress_day_is_the_first_record_above_the_starting_level() -> None:
    e = accepted(start=START, level=Level.ENTRY_1)
    same = assessed(e, Level.ENTRY_1)  # not a progression
    later = assessed(e, Level.ENTRY_3)  # day 60
    done = completed(e, level_reached=Level.ENTRY_2)  # planned end, day 180
    for order in itertools.permutations([same, later, done]):
        state = project_batch(LoadedStates(), [e, *order]).enrolments[e.enrolment_id]
        assert state.start_date == "2025-01-10" and state.progressed_on == "2025-03-11"
    digital = accepted(start=START, programme=Programme.DIGITAL, level=Level.ENTRY_3)
    other = project_batch(LoadedStates(), [digital, assessed(digital, Level.LEVEL_1)])
    assert other.enrolments[digital.enrolment_id].progressed_on is None


def test_esol_enrolments_of_learners_with_a_cross_background_match_are_counted_apart() -> None:
    bridged, same_background, alone = (accepted(start=START) for _ in range(3))
    cross_pair, plain_pair = Pair(bridged), Pair(same_background)
    first = project_batch(LoadedStates(), [bridged, same_background, alone])
    loaded = LoadedStates(enrolments=dict(first.enrolments))
    later = project_batch(
        loaded,
        [
            completed(bridged),
            cross_pair.confirmed(3, cross_background=True),
            plain_pair.confirmed(3, cross_background=False),
        ],
    )
    counts = {key: c for (name, key), c in later.deltas.items() if name == "esol_bridged"}
    assert list(counts) == [(GM.value, MANCHESTER, "entry_1", "2025-01")]
    (c,) = counts.values()
    assert (c["started"], c["completed"], c["achieved"]) == (1, 1, 1)
    assert c.get(ck("started"), 0) == record_key("enrolment", bridged.enrolment_id)
    assert later.participants[bridged.learner].bridged
    assert not later.participants[same_background.learner].bridged
