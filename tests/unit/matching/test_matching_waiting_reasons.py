"""Why a participant is still waiting: the funnel over the hard constraints (pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.matching.domain import Violation, feasible
from services.matching.domain.waiting import (
    STEPS,
    WaitingReason,
    diagnose,
    diagnose_pool,
    reason_counts,
)
from shared.contracts.reference import CombinedAuthority, Sex
from tests.unit.matching.matching_factories import TODAY, participant_view, volunteer_view

WM = CombinedAuthority.WEST_MIDLANDS


def test_every_hard_constraint_belongs_to_exactly_one_step() -> None:
    kinds = [k for _, group in STEPS for k in group]
    assert sorted(kinds) == sorted(Violation) and len(kinds) == len(set(kinds))


def test_a_feasible_volunteer_means_waiting_for_the_next_run() -> None:
    p = participant_view()
    d = diagnose(p, [volunteer_view()], TODAY)
    assert feasible(volunteer_view(), p, TODAY)
    assert d.reason is WaitingReason.AWAITING_NEXT_RUN
    assert [s.remaining for s in d.funnel] == [1, 1, 1, 1, 1, 1]
    assert d.explanation.endswith("the next optimiser run can propose a match.")


@pytest.mark.parametrize(
    ("volunteer", "participant", "reason"),
    [
        ({"combined_authority": WM}, {}, WaitingReason.NO_VOLUNTEERS),
        ({"availability": frozenset({"sun-eve"})}, {}, WaitingReason.NO_SHARED_SLOT),
        ({"gender": Sex.MALE}, {"gender_preference": Sex.FEMALE}, WaitingReason.GENDER_PREFERENCE),
        ({"gender_preference": Sex.MALE}, {}, WaitingReason.GENDER_PREFERENCE),
        ({}, {"declined_volunteers": frozenset({"v-1"})}, WaitingReason.ONLY_DECLINED_PAIRS),
        ({}, {"previous_volunteers": frozenset({"v-1"})}, WaitingReason.ONLY_DECLINED_PAIRS),
        (
            {"dbs_expires_on": TODAY - timedelta(days=1)},
            {},
            WaitingReason.NO_VALID_DBS,
        ),
        ({"free_capacity": 0}, {}, WaitingReason.NO_CAPACITY),
    ],
)
def test_each_constraint_is_named_when_it_leaves_nobody(
    volunteer: dict[str, object], participant: dict[str, object], reason: WaitingReason
) -> None:
    d = diagnose(participant_view(**participant), [volunteer_view(**volunteer)], TODAY)
    assert d.reason is reason
    assert d.funnel[-1].reason is reason and d.funnel[-1].remaining == 0


def test_the_most_fundamental_obstacle_wins_and_the_funnel_shows_the_rest() -> None:
    p = participant_view(availability=frozenset({"mon-am"}), gender_preference=Sex.FEMALE)
    volunteers = [
        # Full, but otherwise fine.
        volunteer_view(volunteer_id="v-full", free_capacity=0),
        # No shared slot, and full as well.
        volunteer_view(volunteer_id="v-other-slot", availability=frozenset({"fri-pm"})),
        # Shares the slot, wrong gender.
        volunteer_view(volunteer_id="v-male", gender=Sex.MALE),
        # Another authority.
        volunteer_view(volunteer_id="v-wm", combined_authority=WM),
    ]
    d = diagnose(p, volunteers, TODAY)
    assert d.reason is WaitingReason.NO_CAPACITY
    assert [(s.reason.value, s.remaining) for s in d.funnel] == [
        ("no_volunteers", 3),
        ("no_shared_slot", 2),
        ("gender_preference", 1),
        ("only_declined_pairs", 1),
        ("no_valid_dbs", 1),
        ("no_capacity", 0),
    ]
    assert d.explanation.startswith("3 volunteers registered in Greater Manchester")
    assert "2 volunteers share an availability slot" in d.explanation


def test_nobody_at_all() -> None:
    d = diagnose(participant_view(), [], TODAY)
    assert d.reason is WaitingReason.NO_VOLUNTEERS and len(d.funnel) == 1
    assert d.explanation == "0 volunteers registered in Greater Manchester."


def test_reasons_never_depend_on_background() -> None:
    """Background (special category) fields are in no hard constraint: changing them or
    withholding them (no consent) never changes a reason."""
    from services.matching.domain import BridgingProfile

    other = BridgingProfile(
        ethnicity_group="asian", religion=None, country_of_birth="PK", age_band=None
    )
    for p_bridging in (None, other):
        for v_bridging in (None, other):
            d = diagnose(
                participant_view(bridging=p_bridging, gender_preference=Sex.FEMALE),
                [volunteer_view(bridging=v_bridging, gender=Sex.MALE)],
                TODAY,
            )
            assert d.reason is WaitingReason.GENDER_PREFERENCE


def test_pool_diagnosis_is_ordered_by_waiting_time_and_counts_every_reason() -> None:
    early = participant_view(
        participant="p-early", waiting_since=participant_view().waiting_since - timedelta(days=9)
    )
    late = participant_view(participant="p-late", availability=frozenset({"sun-eve"}))
    out = diagnose_pool([late, early], [volunteer_view()], TODAY)
    assert [d.participant for d in out] == ["p-early", "p-late"]
    assert out[0].days_waiting(TODAY) == 10
    counts = reason_counts(out)
    assert counts[WaitingReason.AWAITING_NEXT_RUN] == 1
    assert counts[WaitingReason.NO_SHARED_SLOT] == 1
    assert set(counts) == set(WaitingReason) and sum(counts.values()) == 2
