"""Consent changes and erasure in the matching service layer: what is asked of the store
and which events announce it (the Mongo side is covered in tests/security)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import pytest

from services.matching.domain import (
    BackgroundFields,
    BatchPolicy,
    InvalidParticipant,
    Match,
    MatchStatus,
    Participant,
    ParticipantStatus,
    WeightsBook,
    Withdrawal,
)
from services.matching.metrics import MatchingMetrics
from services.matching.repository import MatchingRepository, Outgoing
from services.matching.use_cases import MatchingService
from shared.contracts.enrolment import LearnerErased
from shared.contracts.matching import MatchDeclined, MatchEnded
from shared.contracts.reference import Ethnicity
from shared.telemetry import Telemetry
from tests.unit.matching.matching_factories import (
    BIRMINGHAM,
    GM,
    NOW,
    OLDHAM,
    opt_in,
    participant,
)


def a_match(status: MatchStatus) -> Match:
    return Match(
        match_id=f"m-{status.value}",
        volunteer_id="v1",
        participant="lp_1",
        enrolment_id="enr_1",
        combined_authority=GM,
        local_authority=OLDHAM,
        status=status,
        score=1.0,
        score_components={},
        bridging_dimensions=(),
        shared_slots=(),
        shared_interests=(),
        explanation="",
        waited_since=NOW - timedelta(days=1),
        proposed_at=NOW,
    )


@dataclass
class StubRepo:
    """Only what consent and erasure use: hands a participant with a proposal and a
    confirmed match to the domain's decision, and its closed matches to ``make_events``."""

    known: bool = True
    calls: list[tuple[str, Any]] = field(default_factory=list)
    events: list[Outgoing] = field(default_factory=list)
    withdrawal: Withdrawal | None = None

    async def record_opt_in(self, ce_id: str, incoming: Participant) -> bool:
        self.calls.append(("record_opt_in", (ce_id, incoming.participant)))
        return True

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        self.calls.append(("set_background", (participant, background)))
        return self.known

    async def withdraw_participant(
        self,
        learner: str,
        decide: Callable[[Participant, Sequence[Match]], Withdrawal],
        make_events: Callable[[Sequence[Match]], list[Outgoing]],
        now: datetime,
    ) -> list[Match] | None:
        self.calls.append(("withdraw", learner))
        if not self.known:
            return None
        stored = participant(participant=learner, status=ParticipantStatus.PROPOSED)
        self.withdrawal = decide(
            stored, [a_match(MatchStatus.PROPOSED), a_match(MatchStatus.CONFIRMED)]
        )
        closed = [t.match for t in self.withdrawal.closed]
        self.events = make_events(closed)
        return closed


def service(repo: StubRepo) -> tuple[MatchingService, list[int]]:
    commits: list[int] = []
    svc = MatchingService(
        repo=cast(MatchingRepository, repo),
        weights=cast(WeightsBook, None),
        policy=BatchPolicy(threshold=1, window=timedelta(minutes=5)),
        metrics=MatchingMetrics(Telemetry(service_name="matching-unit-security")),
        clock=lambda: NOW,
        on_commit=lambda: commits.append(1),
    )
    return svc, commits


async def test_withdrawn_consent_withdraws_pending_proposals() -> None:
    repo = StubRepo()
    svc, commits = service(repo)
    assert await svc.consent_changed("lp_1", False, None)
    assert repo.calls == [("withdraw", "lp_1")]
    (declined,) = repo.events  # the confirmed match goes on
    assert isinstance(declined.event, MatchDeclined)
    assert declined.event.reason == "consent_withdrawn" and declined.key == OLDHAM
    assert commits == [1]


async def test_given_consent_stores_the_background_only() -> None:
    repo = StubRepo()
    svc, commits = service(repo)
    background = BackgroundFields(ethnicity=Ethnicity.OTHER_ARAB)
    assert await svc.consent_changed("lp_1", True, background)
    assert repo.calls == [("set_background", ("lp_1", background))]
    assert repo.events == [] and commits == []


async def test_erasure_declines_proposals_and_ends_confirmed_matches() -> None:
    repo = StubRepo()
    svc, _ = service(repo)
    assert await svc.erase_participant("lp_1")
    assert repo.calls == [("withdraw", "lp_1")]
    assert repo.withdrawal is not None and repo.withdrawal.erased
    kinds = [type(o.event) for o in repo.events]
    assert kinds == [MatchDeclined, MatchEnded]
    assert all(getattr(o.event, "reason", "") == "participant_erased" for o in repo.events)


async def test_unknown_participant_changes_nothing() -> None:
    repo = StubRepo(known=False)
    svc, commits = service(repo)
    assert not await svc.erase_participant("lp_unknown")
    assert repo.events == [] and commits == []


# ------------------------------------------------------------------ enrolment events
# Without learner keys (no key ring configured) only opt-ins are acted on; the keyed
# paths (erasure, consent change, opening sealed personal data) need MongoDB and are
# covered in tests/integration/matching and tests/security.


async def test_an_opt_in_enters_the_pool_by_its_event_id() -> None:
    repo = StubRepo()
    svc, _ = service(repo)
    await svc.on_enrolment_event("ce-1", opt_in(learner="lp_1"))
    assert repo.calls == [("record_opt_in", ("ce-1", "lp_1"))]


async def test_an_opt_in_from_outside_its_combined_authority_is_refused() -> None:
    repo = StubRepo()
    svc, _ = service(repo)
    with pytest.raises(InvalidParticipant):
        await svc.on_enrolment_event("ce-1", opt_in(local_authority=BIRMINGHAM))
    assert repo.calls == []


async def test_without_learner_keys_an_erasure_is_not_acted_on() -> None:
    repo = StubRepo()
    svc, _ = service(repo)
    await svc.on_enrolment_event("ce-2", LearnerErased(learner="lp_1", erased_at=NOW))
    assert repo.calls == []
