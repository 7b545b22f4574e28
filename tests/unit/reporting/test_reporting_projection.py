"""The projection domain: states, contributions, and a batch pre-aggregated in memory."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting.domain.projection import (
    AggregateKey,
    Counts,
    InvalidEvent,
    LoadedStates,
    enrolment_contributions,
    keys_needed,
    match_contributions,
    participant_contributions,
    project_batch,
    record_key,
    validate_event,
)
from shared.cloudevents import Event
from shared.contracts.enrolment import AttendanceRecorded
from shared.contracts.reference import Level, Outcome, Programme, WithdrawalReason
from tests.factories.reporting import (
    GM,
    MANCHESTER,
    OLDHAM,
    Pair,
    accepted,
    assessed,
    attendance,
    completed,
    opted_in,
    ref_of,
    withdrawn,
)

JAN = "2025-01"


def outcomes_key(la: str, programme: str = "esol", level: str = "entry_1") -> AggregateKey:
    return ("outcomes", (GM.value, la, programme, level, JAN))


def plain(counts: Counts) -> Counts:
    """Counters without their record-key sums (``ck_*``), tested separately."""
    return {k: v for k, v in counts.items() if not k.startswith("ck_")}


def apply_all(
    events: Sequence[Event], loaded: LoadedStates | None = None
) -> dict[AggregateKey, Counts]:
    return project_batch(loaded or LoadedStates(), events).deltas


def test_a_batch_is_pre_aggregated_into_one_delta_per_key() -> None:
    in_manchester = [accepted(la=MANCHESTER) for _ in range(6)]
    in_oldham = [accepted(la=OLDHAM) for _ in range(4)]
    events: list[Event] = [*in_manchester, *in_oldham]
    events += [completed(e) for e in in_manchester[:3]]
    events += [withdrawn(in_oldham[0], WithdrawalReason.FINANCIAL)]
    deltas = apply_all(events)

    manchester, oldham = deltas[outcomes_key(MANCHESTER)], deltas[outcomes_key(OLDHAM)]
    assert manchester["started"] == 6 and manchester["completed"] == 3
    assert manchester["achieved"] == 3
    assert oldham["started"] == 4 and oldham["withdrawn"] == 1
    assert oldham["withdrawn_reason_7"] == 1
    # 2 outcome keys + 2 equality keys (ethnicity not stated) + 2 QAR keys (the leavers'
    # hybrid end year, issue 15): 6 bulk operations for 14 events.
    assert len(deltas) == 6
    assert sum(1 for name, _ in deltas if name == "qar") == 2
    assert deltas[("equality", (*outcomes_key(OLDHAM)[1], "not_stated"))]["withdrawn"] == 1


def test_status_moves_between_counters_across_batches() -> None:
    e = accepted()
    first = project_batch(LoadedStates(), [e])
    loaded = LoadedStates(enrolments=dict(first.enrolments))
    second = project_batch(loaded, [completed(e, Outcome.NOT_ACHIEVED)])
    assert plain(second.deltas[outcomes_key(MANCHESTER)]) == {"completed": 1, "not_achieved": 1}
    loaded = LoadedStates(enrolments=dict(second.enrolments))
    # A later outcome correction moves the enrolment from not achieved to achieved.
    third = project_batch(loaded, [completed(e, Outcome.ACHIEVED)])
    assert plain(third.deltas[outcomes_key(MANCHESTER)]) == {"achieved": 1, "not_achieved": -1}

    assert outcomes_key(MANCHESTER) in third.decremented


def test_a_record_key_moves_with_its_record_between_counters() -> None:
    e = accepted()
    rk = record_key("enrolment", e.enrolment_id)
    first = project_batch(LoadedStates(), [e])
    assert first.deltas[outcomes_key(MANCHESTER)]["ck_started"] == rk
    loaded = LoadedStates(enrolments=dict(first.enrolments))
    second = project_batch(loaded, [withdrawn(e, WithdrawalReason.FINANCIAL)])
    delta = second.deltas[outcomes_key(MANCHESTER)]
    assert (
        delta["ck_withdrawn"] == rk
        and delta["ck_withdrawn_reason_" + str(WithdrawalReason.FINANCIAL.value)] == rk
    )
    assert "ck_started" not in delta  # still started: its key stays where it was
    assert record_key("enrolment", e.enrolment_id) == rk  # fixed by the id (rebuilds agree)


def test_esol_progression_compares_the_highest_level_reached_with_the_start() -> None:
    up, same, down = (
        accepted(level=Level.ENTRY_1),
        accepted(level=Level.ENTRY_2),
        accepted(level=Level.ENTRY_3),
    )
    events = [
        up,
        same,
        down,
        assessed(up, Level.ENTRY_2),
        assessed(up, Level.ENTRY_1),  # a lower later assessment does not undo progress
        assessed(same, Level.ENTRY_2),
        completed(down, level_reached=Level.ENTRY_2),
    ]
    out = project_batch(LoadedStates(), events)
    assert out.enrolments[up.enrolment_id].level_reached == "entry_2"
    total = {
        f: sum(c.get(f, 0) for (name, _), c in out.deltas.items() if name == "outcomes")
        for f in ("esol_assessed", "esol_progressed")
    }
    assert total == {"esol_assessed": 3, "esol_progressed": 1}


def test_non_esol_programmes_do_not_count_towards_esol_progression() -> None:
    e = accepted(programme=Programme.DIGITAL, level=Level.ENTRY_1)
    deltas = apply_all([e, assessed(e, Level.LEVEL_1)])
    counts = deltas[outcomes_key(MANCHESTER, "digital")]
    assert "esol_assessed" not in counts


def test_a_confirmed_match_marks_every_enrolment_of_the_learner_as_matched() -> None:
    e = accepted()
    pair = Pair(e)
    first = project_batch(LoadedStates(), [e, opted_in(e), completed(e)])
    assert plain(first.deltas[("participants", (GM.value, MANCHESTER, JAN))]) == {
        "opted_in": 1,
        "waiting": 1,
    }
    loaded = LoadedStates(enrolments=dict(first.enrolments), participants=dict(first.participants))
    second = project_batch(loaded, [pair.proposed(), pair.confirmed(after_days=12.5)])
    assert plain(second.deltas[outcomes_key(MANCHESTER)]) == {
        "matched_started": 1,
        "matched_completed": 1,
        "matched_achieved": 1,
    }
    assert plain(second.deltas[("participants", (GM.value, MANCHESTER, JAN))]) == {
        "waiting": -1,
        "matched": 1,
    }
    assert plain(second.deltas[("matching", (GM.value, MANCHESTER, JAN))]) == {
        "proposed": 1,
        "confirmed": 1,
        "cross_background": 1,
    }
    assert second.matches[pair.match_id].wait_days == 12.5


def test_keys_needed_covers_learners_of_enrolment_and_match_events() -> None:
    e, other = accepted(), accepted()
    pair = Pair(other)
    keys = keys_needed([e, pair.confirmed(3)])
    assert keys.learners == {e.learner, other.learner}
    assert keys.match_ids == {pair.match_id}


def test_events_naming_a_borough_outside_their_combined_authority_are_invalid() -> None:
    e = accepted()
    bad = AttendanceRecorded(
        **{**ref_of(e), "local_authority": "E06000001"},  # Hartlepool is in Tees Valley
        period_start=date(2025, 1, 1),
        period_end=date(2025, 1, 31),
        sessions_planned=4,
        sessions_attended=3,
    )
    try:
        validate_event(bad)
    except InvalidEvent as exc:
        assert "E06000001" in str(exc)
    else:
        raise AssertionError("expected InvalidEvent")
    validate_event(attendance(e, 4, 3))


# ---------------------------------------------------------------------------------------
# The property behind "rebuild = live": aggregates depend only on the events, not on how
# they were cut into batches nor on how the two topics interleaved.


def scenario(rng: random.Random) -> tuple[list[Event], list[Event]]:
    """(enrolment-topic events, match-topic events), each in its own topic order."""
    enrolment_events: list[Event] = []
    match_events: list[Event] = []
    for _ in range(rng.randint(1, 8)):
        e = accepted(
            la=rng.choice([MANCHESTER, OLDHAM]),
            level=rng.choice([Level.PRE_ENTRY, Level.ENTRY_1, Level.ENTRY_2]),
            start=date(2025, rng.randint(1, 3), 10),
        )
        enrolment_events.append(e)
        if rng.random() < 0.5:
            enrolment_events.append(opted_in(e))
        enrolment_events.append(attendance(e, 8, rng.randint(0, 8)))
        if rng.random() < 0.5:
            enrolment_events.append(assessed(e, rng.choice([Level.ENTRY_1, Level.ENTRY_3])))
        fate = rng.random()
        if fate < 0.4:
            enrolment_events.append(completed(e, rng.choice(list(Outcome))))
        elif fate < 0.6:
            enrolment_events.append(withdrawn(e, rng.choice(list(WithdrawalReason))))
        if rng.random() < 0.5:
            pair = Pair(e)
            match_events.append(pair.proposed())
            if rng.random() < 0.7:
                after = rng.uniform(1, 40)
                match_events.append(pair.confirmed(after, rng.random() < 0.5))
                for day in sorted(rng.sample(range(0, 200), rng.randint(0, 3))):
                    match_events.append(pair.checked_in(after, day))  # meetings (issue 16)
                if rng.random() < 0.5:
                    match_events.append(pair.ended())
            else:
                match_events.append(pair.declined())
    return enrolment_events, match_events


def interleave(rng: random.Random, a: list[Event], b: list[Event]) -> list[Event]:
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and rng.random() < 0.5):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


def run_in_batches(events: list[Event], cuts: list[int]) -> dict[AggregateKey, Counts]:
    loaded = LoadedStates()
    aggregates: dict[AggregateKey, Counts] = {}
    bounds = [0, *sorted(set(cuts)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        out = project_batch(loaded, events[lo:hi])
        loaded.enrolments.update(out.enrolments)
        loaded.participants.update(out.participants)
        loaded.matches.update(out.matches)
        for key, delta in out.deltas.items():
            counts = aggregates.setdefault(key, {})
            for name, value in delta.items():
                counts[name] = counts.get(name, 0) + value
    return {k: {n: v for n, v in c.items() if v} for k, c in aggregates.items() if any(c.values())}


def from_final_states(events: list[Event]) -> dict[AggregateKey, Counts]:
    out = project_batch(LoadedStates(), events)
    totals: dict[AggregateKey, Counts] = {}
    items = []
    for e in out.enrolments.values():
        p = out.participants.get(e.learner)
        items += list(
            enrolment_contributions(e, p is not None and p.matched, p is not None and p.bridged)
        )
    for p in out.participants.values():
        items += list(participant_contributions(p))
    for m in out.matches.values():
        items += list(match_contributions(m))
    for key, counts in items:
        target = totals.setdefault(key, {})
        for name, value in counts.items():
            if value:
                target[name] = target.get(name, 0) + value
    return {k: c for k, c in totals.items() if c}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_aggregates_do_not_depend_on_batching_or_topic_interleaving(seed: int) -> None:
    rng = random.Random(seed)
    enrolment_events, match_events = scenario(rng)
    one_order = interleave(rng, enrolment_events, match_events)
    other_order = interleave(rng, enrolment_events, match_events)
    n = len(one_order)
    cuts_a = [rng.randint(0, n) for _ in range(rng.randint(0, 6))]
    cuts_b = [rng.randint(0, n) for _ in range(rng.randint(0, 6))]

    expected = from_final_states(one_order)
    assert run_in_batches(one_order, cuts_a) == expected
    assert run_in_batches(other_order, cuts_b) == expected
    assert run_in_batches(one_order, []) == expected
