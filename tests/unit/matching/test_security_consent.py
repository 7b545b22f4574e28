"""Consent changes and erasure in the matching service layer, over an in-memory unit of
work: what is stored and which events announce it (the Mongo side is covered in
tests/security)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import cast

import pytest

from services.matching.domain import (
    BackgroundFields,
    BatchPolicy,
    InvalidParticipant,
    Match,
    MatchStatus,
    ParticipantStatus,
    WeightsBook,
)
from services.matching.metrics import MatchingMetrics
from services.matching.repository import Conflict
from services.matching.use_cases import MatchingService
from shared.contracts.enrolment import LearnerErased
from shared.contracts.matching import MatchDeclined, MatchEnded
from shared.contracts.reference import Ethnicity
from shared.telemetry import Telemetry
from tests.unit.matching.matching_factories import (
    BIRMINGHAM,
    NOW,
    OLDHAM,
    match,
    opt_in,
    participant,
    volunteer,
)
from tests.unit.matching.matching_fakes import FakeMatches, MatchingState, unit_of_work_factory


def a_match(status: MatchStatus) -> Match:
    return match(
        status,
        match_id=f"m-{status.value}",
        volunteer_id="v1",
        participant="lp_1",
        enrolment_id="enr_1",
        waited_since=NOW - timedelta(days=1),
        proposed_at=NOW,
        decided_at=None,
    )


def seeded() -> MatchingState:
    """A proposed participant with a pending proposal and a confirmed match."""
    state = MatchingState()
    state.participants["lp_1"] = participant(participant="lp_1", status=ParticipantStatus.PROPOSED)
    state.volunteers["v1"] = volunteer(volunteer_id="v1", active=2)
    for status in (MatchStatus.PROPOSED, MatchStatus.CONFIRMED):
        m = a_match(status)
        state.matches[m.match_id] = m
    return state


def service(state: MatchingState) -> tuple[MatchingService, list[int]]:
    commits: list[int] = []
    svc = MatchingService(
        uow=unit_of_work_factory(state),
        weights=cast(WeightsBook, None),
        policy=BatchPolicy(threshold=1, window=timedelta(minutes=5)),
        metrics=MatchingMetrics(Telemetry(service_name="matching-unit-security")),
        clock=lambda: NOW,
        on_commit=lambda: commits.append(1),
    )
    return svc, commits


async def test_withdrawn_consent_withdraws_pending_proposals() -> None:
    state = seeded()
    svc, commits = service(state)
    assert await svc.consent_changed("lp_1", False, None)
    (declined,) = state.published()  # the confirmed match goes on
    assert isinstance(declined.data, MatchDeclined)
    assert declined.data.reason == "consent_withdrawn" and declined.time == NOW
    assert [m.key for m in state.outbox] == [OLDHAM]
    assert state.matches["m-confirmed"].status is MatchStatus.CONFIRMED
    assert state.volunteers["v1"].active == 1
    after = state.participants["lp_1"]
    assert after.status is ParticipantStatus.ENDED and not after.consent_matching
    assert after.background is None and "lp_1" not in state.erased
    assert state.transactions == 1 and commits == [1]


async def test_given_consent_stores_the_background_only() -> None:
    state = seeded()
    svc, commits = service(state)
    background = BackgroundFields(ethnicity=Ethnicity.OTHER_ARAB)
    assert await svc.consent_changed("lp_1", True, background)
    assert state.participants["lp_1"].background == background
    assert state.outbox == [] and commits == []
    assert state.transactions == 0  # one conditional write, as before


async def test_erasure_declines_proposals_and_ends_confirmed_matches() -> None:
    state = seeded()
    svc, _ = service(state)
    assert await svc.erase_participant("lp_1")
    events = [e.data for e in state.published()]
    assert [type(e) for e in events] == [MatchEnded, MatchDeclined]  # by match id
    assert all(getattr(e, "reason", "") == "participant_erased" for e in events)
    assert "lp_1" in state.erased and state.volunteers["v1"].active == 0
    erased = state.participants["lp_1"]
    assert erased.age_band is None and erased.availability == () and erased.background is None


async def test_unknown_participant_changes_nothing() -> None:
    state = seeded()
    svc, commits = service(state)
    assert not await svc.erase_participant("lp_unknown")
    assert state.outbox == [] and commits == []


async def test_a_withdrawal_meeting_a_concurrent_change_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = seeded()
    svc, commits = service(state)
    # The confirmed match ends between the read and the write of another transaction.
    original = FakeMatches.active_of_participant

    async def stale(self: FakeMatches, participant: str) -> list[Match]:
        found = await original(self, participant)
        confirmed = self.state.matches["m-confirmed"]
        self.state.matches["m-confirmed"] = replace(confirmed, status=MatchStatus.ENDED)
        return found

    monkeypatch.setattr(FakeMatches, "active_of_participant", stale)
    with pytest.raises(Conflict):
        await svc.erase_participant("lp_1")
    assert state.matches["m-proposed"].status is MatchStatus.PROPOSED
    assert state.volunteers["v1"].active == 2 and "lp_1" not in state.erased
    assert state.outbox == [] and commits == []


# ------------------------------------------------------------------ enrolment events
# Without learner keys (no key ring configured) only opt-ins are acted on; the keyed
# paths (erasure, consent change, opening sealed personal data) need MongoDB and are
# covered in tests/integration/matching and tests/security.


async def test_an_opt_in_enters_the_pool_by_its_event_id() -> None:
    state = MatchingState()
    svc, _ = service(state)
    assert await svc.record_opt_in("ce-1", opt_in(learner="lp_1"))
    await svc.on_enrolment_event("ce-1", opt_in(learner="lp_1", languages=("en",)))
    assert list(state.inbox) == ["ce-1"]
    assert state.participants["lp_1"].languages == ("ar", "en")  # the redelivery ignored
    assert state.transactions == 2 and state.outbox == []


async def test_an_opt_in_from_outside_its_combined_authority_is_refused() -> None:
    state = MatchingState()
    svc, _ = service(state)
    with pytest.raises(InvalidParticipant):
        await svc.on_enrolment_event("ce-1", opt_in(local_authority=BIRMINGHAM))
    assert state.participants == {} and state.inbox == {}


async def test_without_learner_keys_an_erasure_is_not_acted_on() -> None:
    state = seeded()
    svc, _ = service(state)
    await svc.on_enrolment_event("ce-2", LearnerErased(learner="lp_1", erased_at=NOW))
    assert state.transactions == 0 and "lp_1" not in state.erased
