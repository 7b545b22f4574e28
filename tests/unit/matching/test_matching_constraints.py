"""Hard constraints are never traded off against score."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from matching_factories import (
    BIRMINGHAM,
    NOW,
    TODAY,
    WIGAN,
    participant_view,
    volunteer_view,
)

from services.matching.domain import (
    Violation,
    Weights,
    feasible,
    optimal_assignment,
    violations,
)
from shared.contracts.reference import CombinedAuthority, Sex


def test_the_baseline_pair_is_feasible() -> None:
    assert violations(volunteer_view(), participant_view(), TODAY) == ()
    assert feasible(volunteer_view(), participant_view(), TODAY)


def test_neighbouring_borough_in_the_same_combined_authority_is_allowed() -> None:
    assert feasible(volunteer_view(local_authority=WIGAN), participant_view(), TODAY)


@pytest.mark.parametrize(
    ("volunteer", "participant", "expected"),
    [
        (
            {"combined_authority": CombinedAuthority.WEST_MIDLANDS, "local_authority": BIRMINGHAM},
            {},
            Violation.DIFFERENT_COMBINED_AUTHORITY,
        ),
        ({"dbs_expires_on": TODAY - timedelta(days=1)}, {}, Violation.DBS_EXPIRED),
        ({"free_capacity": 0}, {}, Violation.NO_CAPACITY),
        ({}, {"availability": frozenset({"sun-eve"})}, Violation.NO_SHARED_AVAILABILITY),
        ({}, {"availability": frozenset()}, Violation.NO_SHARED_AVAILABILITY),
        (
            {"gender": Sex.MALE},
            {"gender_preference": Sex.FEMALE},
            Violation.PARTICIPANT_GENDER_PREFERENCE,
        ),
        (
            {"gender": None},
            {"gender_preference": Sex.FEMALE},
            Violation.PARTICIPANT_GENDER_PREFERENCE,
        ),
        (
            {"gender_preference": Sex.MALE},
            {"sex": Sex.FEMALE},
            Violation.VOLUNTEER_GENDER_PREFERENCE,
        ),
        ({"gender_preference": Sex.MALE}, {"sex": None}, Violation.VOLUNTEER_GENDER_PREFERENCE),
        ({}, {"declined_volunteers": frozenset({"v-1"})}, Violation.DECLINED_BEFORE),
        ({}, {"previous_volunteers": frozenset({"v-1"})}, Violation.MATCHED_BEFORE),
    ],
)
def test_each_hard_constraint(
    volunteer: dict[str, Any], participant: dict[str, Any], expected: Violation
) -> None:
    v, p = volunteer_view(**volunteer), participant_view(**participant)
    assert violations(v, p, TODAY) == (expected,)
    assert not feasible(v, p, TODAY)
    assert optimal_assignment([v], [p], Weights(), today=TODAY, now=NOW) == []


def test_dbs_check_is_valid_through_its_expiry_date() -> None:
    v = volunteer_view(dbs_expires_on=TODAY)
    assert feasible(v, participant_view(), TODAY)
    assert not feasible(v, participant_view(), TODAY + timedelta(days=1))


def test_matching_gender_preferences_on_both_sides_are_feasible() -> None:
    v = volunteer_view(gender=Sex.FEMALE, gender_preference=Sex.FEMALE)
    p = participant_view(sex=Sex.FEMALE, gender_preference=Sex.FEMALE)
    assert feasible(v, p, TODAY)


def test_an_infeasible_pair_loses_to_a_worse_feasible_one_however_high_it_scores() -> None:
    declined_star = volunteer_view(
        volunteer_id="v-star", interests=frozenset({"cooking", "music", "chess", "films"})
    )
    plain = volunteer_view(volunteer_id="v-plain", local_authority=WIGAN, interests=frozenset())
    p = participant_view(
        interests=frozenset({"cooking", "music", "chess", "films"}),
        declined_volunteers=frozenset({"v-star"}),
    )
    proposals = optimal_assignment([declined_star, plain], [p], Weights(), today=TODAY, now=NOW)
    assert [(x.volunteer_id, x.participant) for x in proposals] == [("v-plain", "p-1")]


def test_violations_and_feasible_agree_on_random_pairs() -> None:
    from bench.matching_optimiser import random_pool

    vols, parts = random_pool(3, 40, 40, now=NOW)
    vols = [replace(v, free_capacity=v.free_capacity if i % 5 else 0) for i, v in enumerate(vols)]
    for v in vols:
        for p in parts:
            assert feasible(v, p, TODAY) == (violations(v, p, TODAY) == ())
