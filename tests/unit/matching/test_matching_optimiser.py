"""Whole-pool optimal assignment: beats greedy first-come on total score, never breaks a
hard constraint, is deterministic, and lets waiting time win in the end."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matching_factories import NOW, TODAY, participant_view, volunteer_view

from bench.matching_optimiser import random_pool
from services.matching.domain import (
    ParticipantView,
    Proposal,
    VolunteerView,
    Weights,
    greedy_assignment,
    optimal_assignment,
    total_objective,
    total_score,
    violations,
)

W = Weights()
NO_WAITING = Weights(waiting_per_day=0.0)


def pairs(proposals: list[Proposal]) -> list[tuple[str, str, float]]:
    return [(p.volunteer_id, p.participant, p.score) for p in proposals]


def assert_respects_hard_constraints(
    proposals: list[Proposal], vols: list[VolunteerView], parts: list[ParticipantView]
) -> None:
    by_v = {v.volunteer_id: v for v in vols}
    by_p = {p.participant: p for p in parts}
    per_participant = Counter(p.participant for p in proposals)
    per_volunteer = Counter(p.volunteer_id for p in proposals)
    assert max(per_participant.values(), default=0) <= 1
    for vid, n in per_volunteer.items():
        assert n <= by_v[vid].free_capacity
    for pr in proposals:
        assert violations(by_v[pr.volunteer_id], by_p[pr.participant], TODAY) == ()


def test_the_textbook_case_where_first_come_greedy_loses() -> None:
    # p-early could take either volunteer; p-late only v-a. Greedy gives v-a to
    # p-early (slightly better for them) and leaves p-late waiting.
    v_a = volunteer_view(volunteer_id="v-a", availability=frozenset({"mon-am", "tue-am"}))
    v_b = volunteer_view(
        volunteer_id="v-b", availability=frozenset({"mon-am"}), interests=frozenset()
    )
    early = participant_view(
        participant="p-early",
        availability=frozenset({"mon-am", "tue-am"}),
        waiting_since=NOW - timedelta(days=2),
    )
    late = participant_view(participant="p-late", availability=frozenset({"tue-am"}))
    greedy = greedy_assignment([v_a, v_b], [early, late], NO_WAITING, today=TODAY, now=NOW)
    optimal = optimal_assignment([v_a, v_b], [early, late], NO_WAITING, today=TODAY, now=NOW)
    assert [(p.volunteer_id, p.participant) for p in greedy] == [("v-a", "p-early")]
    assert sorted((p.volunteer_id, p.participant) for p in optimal) == [
        ("v-a", "p-late"),
        ("v-b", "p-early"),
    ]
    assert total_score(optimal) > total_score(greedy)


@pytest.mark.parametrize(("n_vols", "n_parts"), [(10, 20), (30, 60), (60, 100)])
def test_optimal_beats_greedy_on_seeded_random_pools(n_vols: int, n_parts: int) -> None:
    gains = []
    for seed in range(1, 9):
        vols, parts = random_pool(seed, n_vols, n_parts, now=NOW)
        # Pure score (no waiting priority): what coordinators see on each proposal.
        optimal = optimal_assignment(vols, parts, NO_WAITING, today=TODAY, now=NOW)
        greedy = greedy_assignment(vols, parts, NO_WAITING, today=TODAY, now=NOW)
        assert total_score(optimal) >= total_score(greedy) - 1e-9
        gains.append(total_score(optimal) - total_score(greedy))
        # With priority: the objective the optimiser maximises.
        optimal_w = optimal_assignment(vols, parts, W, today=TODAY, now=NOW)
        greedy_w = greedy_assignment(vols, parts, W, today=TODAY, now=NOW)
        assert total_objective(optimal_w) >= total_objective(greedy_w) - 1e-9
        assert_respects_hard_constraints(optimal_w, vols, parts)
    assert sum(gains) > 0
    assert sum(1 for g in gains if g > 0) >= len(gains) // 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    n_vols=st.integers(min_value=0, max_value=25),
    n_parts=st.integers(min_value=0, max_value=40),
    consent_rate=st.floats(min_value=0.0, max_value=1.0),
    max_capacity=st.integers(min_value=1, max_value=4),
    waiting_per_day=st.sampled_from([0.0, 0.25, 3.0]),
)
def test_property_never_violates_hard_constraints_and_never_loses_to_greedy(
    seed: int,
    n_vols: int,
    n_parts: int,
    consent_rate: float,
    max_capacity: int,
    waiting_per_day: float,
) -> None:
    vols, parts = random_pool(
        seed, n_vols, n_parts, now=NOW, consent_rate=consent_rate, max_capacity=max_capacity
    )
    weights = Weights(waiting_per_day=waiting_per_day)
    optimal = optimal_assignment(vols, parts, weights, today=TODAY, now=NOW)
    greedy = greedy_assignment(vols, parts, weights, today=TODAY, now=NOW)
    assert_respects_hard_constraints(optimal, vols, parts)
    assert_respects_hard_constraints(greedy, vols, parts)
    assert total_objective(optimal) >= total_objective(greedy) - 1e-6


def test_capacity_is_expanded_into_places() -> None:
    v = volunteer_view(free_capacity=3)
    parts = [participant_view(participant=f"p-{i}") for i in range(5)]
    proposals = optimal_assignment([v], parts, W, today=TODAY, now=NOW)
    assert len(proposals) == 3
    assert {p.volunteer_id for p in proposals} == {"v-1"}


def test_deterministic_whatever_the_input_order() -> None:
    vols, parts = random_pool(11, 40, 80, now=NOW)
    reference = pairs(optimal_assignment(vols, parts, W, today=TODAY, now=NOW))
    rng = random.Random(5)
    for _ in range(5):
        shuffled_v, shuffled_p = vols[:], parts[:]
        rng.shuffle(shuffled_v)
        rng.shuffle(shuffled_p)
        again = optimal_assignment(shuffled_v, shuffled_p, W, today=TODAY, now=NOW)
        assert pairs(again) == reference
    assert reference  # a pool where something is proposed


def test_ties_are_broken_the_same_way_every_time() -> None:
    # Identical volunteers and identical participants: many optimal answers.
    vols = [volunteer_view(volunteer_id=f"v-{i}") for i in range(4)]
    parts = [participant_view(participant=f"p-{i}", waiting_since=NOW) for i in range(6)]
    first = pairs(optimal_assignment(vols, parts, W, today=TODAY, now=NOW))
    for _ in range(3):
        assert pairs(optimal_assignment(vols[::-1], parts[::-1], W, today=TODAY, now=NOW)) == first


def test_waiting_time_raises_priority_until_it_outweighs_a_better_pair() -> None:
    v = volunteer_view(interests=frozenset({"cooking", "music", "chess", "films"}))
    newcomer = participant_view(
        participant="p-new",
        interests=frozenset({"cooking", "music", "chess", "films"}),
        waiting_since=NOW,
    )
    gap = (
        optimal_assignment([v], [newcomer], W, today=TODAY, now=NOW)[0].score
        - optimal_assignment(
            [v], [participant_view(interests=frozenset())], W, today=TODAY, now=NOW
        )[0].score
    )
    assert gap > 0
    days_needed = gap / W.waiting_per_day

    def winner(waited_days: float) -> str:
        old = participant_view(
            participant="p-old",
            interests=frozenset(),
            waiting_since=NOW - timedelta(days=waited_days),
        )
        return optimal_assignment([v], [newcomer, old], W, today=TODAY, now=NOW)[0].participant

    assert winner(days_needed * 0.5) == "p-new"
    assert winner(days_needed * 1.5) == "p-old"


def test_nobody_waits_forever_even_with_a_stream_of_better_newcomers() -> None:
    """Each day one volunteer place frees up and a better-scoring newcomer arrives. The
    least attractive participant is still matched within gap/rate days; without the
    waiting priority they never would be."""
    v = volunteer_view(interests=frozenset({"cooking", "music", "chess", "films"}))
    stuck = participant_view(participant="p-stuck", interests=frozenset(), waiting_since=NOW)

    def days_until_matched(weights: Weights, horizon: int) -> int | None:
        waiting = [stuck]
        for day in range(1, horizon + 1):
            now = NOW + timedelta(days=day)
            newcomer = participant_view(
                participant=f"p-new-{day}",
                interests=frozenset({"cooking", "music", "chess", "films"}),
                waiting_since=now,
            )
            waiting.append(newcomer)
            chosen = optimal_assignment([v], waiting, weights, today=TODAY, now=now)
            assert len(chosen) == 1
            if chosen[0].participant == "p-stuck":
                return day
            waiting = [p for p in waiting if p.participant != chosen[0].participant]
        return None

    gap = W.shared_interest * 4
    matched_on = days_until_matched(W, horizon=60)
    assert matched_on is not None and matched_on <= gap / W.waiting_per_day + 1
    assert days_until_matched(NO_WAITING, horizon=30) is None


def test_empty_and_infeasible_pools_propose_nothing() -> None:
    assert optimal_assignment([], [], W, today=TODAY, now=NOW) == []
    assert optimal_assignment([volunteer_view()], [], W, today=TODAY, now=NOW) == []
    far = participant_view(availability=frozenset({"sun-eve"}))
    assert optimal_assignment([volunteer_view()], [far], W, today=TODAY, now=NOW) == []


def test_duplicate_people_in_a_pool_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="duplicate participants"):
        optimal_assignment([volunteer_view()], [participant_view()] * 2, W, today=TODAY, now=NOW)
    with pytest.raises(ValueError, match="duplicate volunteer"):
        optimal_assignment([volunteer_view()] * 2, [participant_view()], W, today=TODAY, now=NOW)


def test_expired_dbs_volunteers_in_the_pool_get_nothing() -> None:
    vols, parts = random_pool(21, 30, 60, now=NOW)
    expired = {v.volunteer_id for v in vols if v.dbs_expires_on < TODAY}
    assert expired
    proposals = optimal_assignment(vols, parts, W, today=TODAY, now=NOW)
    assert not {p.volunteer_id for p in proposals} & expired
