"""Matching's use cases over an in-memory unit of work: the decisions they now make
(a transition with its status checks, a DBS pause, a check-in) are saved with their
events in one unit of work, and a refusal or a conflict leaves nothing behind."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import cast

import pytest

from services.matching.domain import (
    FLAG_DBS_EXPIRED,
    BatchPolicy,
    InvalidTransition,
    MatchStatus,
    ParticipantStatus,
    WeightsBook,
)
from services.matching.metrics import MatchingMetrics
from services.matching.repository import Conflict
from services.matching.use_cases import MatchingService, NotFound
from shared.auth import Principal, Role
from shared.contracts.matching import (
    MatchCheckInRecorded,
    MatchConfirmed,
    MatchDeclined,
    VolunteerDbsExpired,
)
from shared.contracts.reference import CombinedAuthority
from shared.telemetry import Telemetry
from tests.unit.matching.matching_factories import (
    GM,
    NOW,
    TODAY,
    match,
    participant,
    volunteer,
)
from tests.unit.matching.matching_fakes import MatchingState, unit_of_work_factory

COORDINATOR = Principal(
    principal_id="c-1", name="Coordinator", role=Role.COORDINATOR, combined_authorities=(GM,)
)


def proposed_pair(status: MatchStatus = MatchStatus.PROPOSED) -> MatchingState:
    state = MatchingState()
    state.volunteers["v-1"] = volunteer(active=1)
    participant_status = (
        ParticipantStatus.PROPOSED if status is MatchStatus.PROPOSED else ParticipantStatus.MATCHED
    )
    state.participants["learner-1"] = participant(status=participant_status)
    state.matches["m-1"] = match(status)
    return state


def service(state: MatchingState) -> MatchingService:
    return MatchingService(
        uow=unit_of_work_factory(state),
        weights=cast(WeightsBook, None),
        policy=BatchPolicy(threshold=1, window=timedelta(minutes=5)),
        metrics=MatchingMetrics(Telemetry(service_name="matching-unit-uow")),
        clock=lambda: NOW,
    )


async def test_a_decline_returns_the_participant_to_the_pool_with_its_event() -> None:
    state = proposed_pair()
    match = await service(state).decide(COORDINATOR, "m-1", accepted=False, reason="distance")
    assert match.status is MatchStatus.DECLINED and state.matches["m-1"] == match
    after = state.participants["learner-1"]
    assert after.status is ParticipantStatus.WAITING and after.declined_volunteers == ("v-1",)
    assert after.pool_entered_at == NOW and state.volunteers["v-1"].active == 0
    (event,) = state.published()
    assert isinstance(event.data, MatchDeclined) and event.time == NOW


async def test_an_accept_confirms_the_match() -> None:
    state = proposed_pair()
    await service(state).decide(COORDINATOR, "m-1", accepted=True, reason=None)
    assert state.participants["learner-1"].status is ParticipantStatus.MATCHED
    assert state.volunteers["v-1"].active == 1
    assert [type(e.data) for e in state.published()] == [MatchConfirmed]


async def test_a_match_out_of_scope_or_decided_already_is_refused_and_nothing_changes() -> None:
    state = proposed_pair(MatchStatus.CONFIRMED)
    before = (dict(state.matches), dict(state.participants), dict(state.volunteers))
    elsewhere = COORDINATOR.model_copy(
        update={"combined_authorities": (CombinedAuthority.WEST_MIDLANDS,)}
    )
    with pytest.raises(NotFound):
        await service(state).decide(elsewhere, "m-1", accepted=True, reason=None)
    with pytest.raises(InvalidTransition):
        await service(state).decide(COORDINATOR, "m-1", accepted=False, reason="late")
    assert (state.matches, state.participants, state.volunteers) == before
    assert state.outbox == [] and state.transactions == 0


async def test_a_transition_whose_participant_moved_is_a_conflict_and_writes_nothing() -> None:
    state = proposed_pair()
    # The participant is no longer proposed: the match is saved first, then undone.
    state.participants["learner-1"] = replace(
        state.participants["learner-1"], status=ParticipantStatus.ENDED
    )
    with pytest.raises(Conflict):
        await service(state).decide(COORDINATOR, "m-1", accepted=False, reason="distance")
    assert state.matches["m-1"].status is MatchStatus.PROPOSED  # the match write undone
    assert state.volunteers["v-1"].active == 1 and state.outbox == []


async def test_a_lapsed_dbs_pauses_the_volunteer_once() -> None:
    state = proposed_pair()
    state.volunteers["v-1"] = volunteer(active=1, dbs_expires_on=TODAY - timedelta(days=1))
    svc = service(state)
    assert await svc.check_dbs() == 1
    assert await svc.check_dbs() == 0
    assert state.matches["m-1"].flags == (FLAG_DBS_EXPIRED,)
    (event,) = state.published()
    assert isinstance(event.data, VolunteerDbsExpired)
    assert event.data.paused_match_ids == ("m-1",)


async def test_a_check_in_is_recorded_once_per_day() -> None:
    state = proposed_pair(MatchStatus.CONFIRMED)
    svc = service(state)
    first = await svc.record_check_in(COORDINATOR, "m-1", TODAY)
    again = await svc.record_check_in(COORDINATOR, "m-1", TODAY)
    assert first.created and not again.created and again.check_in == first.check_in
    assert [type(e.data) for e in state.published()] == [MatchCheckInRecorded]
    assert first.health is not None and first.health.check_ins == 1
