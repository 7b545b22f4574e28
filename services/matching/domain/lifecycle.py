"""A match's life: proposed from an optimiser proposal, then accepted or declined by a
coordinator, and ended; each transition says what it does to participant and volunteer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from services.matching.domain.errors import DomainError, InvalidTransition, VolunteerIneligible
from services.matching.domain.optimiser import Proposal
from services.matching.domain.pool import Participant, ParticipantStatus
from services.matching.domain.profiles import VolunteerView
from services.matching.domain.scoring import explain
from services.matching.domain.volunteers import Volunteer
from shared.contracts.reference import CombinedAuthority


class MatchStatus(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    ENDED = "ended"


ACTIVE_MATCH_STATUSES = (MatchStatus.PROPOSED, MatchStatus.CONFIRMED)
FLAG_DBS_EXPIRED = "volunteer_dbs_expired"
SYSTEM = "system"
"""Who decides what no coordinator decided (a withdrawal closing a proposal)."""


@dataclass(frozen=True)
class Match:
    match_id: str
    volunteer_id: str
    participant: str
    enrolment_id: str | None
    combined_authority: CombinedAuthority
    local_authority: str
    status: MatchStatus
    score: float
    score_components: Mapping[str, float]
    bridging_dimensions: tuple[str, ...]
    shared_slots: tuple[str, ...]
    shared_interests: tuple[str, ...]
    explanation: str
    waited_since: datetime
    proposed_at: datetime
    run_id: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    decline_reason: str | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    meetings_count: int | None = None
    flags: tuple[str, ...] = ()

    @property
    def cross_background(self) -> bool:
        return bool(self.bridging_dimensions)


def propose(
    proposal: Proposal,
    volunteer: VolunteerView,
    participant: Participant,
    *,
    match_id: str,
    run_id: str,
    now: datetime,
) -> Match:
    b = proposal.breakdown
    return Match(
        match_id=match_id,
        volunteer_id=volunteer.volunteer_id,
        participant=participant.participant,
        enrolment_id=participant.enrolment_id,
        combined_authority=participant.combined_authority,
        local_authority=participant.local_authority,
        status=MatchStatus.PROPOSED,
        score=b.total,
        score_components=dict(b.components),
        bridging_dimensions=tuple(d.value for d in b.bridging_dimensions),
        shared_slots=b.shared_slots,
        shared_interests=b.shared_interests,
        explanation=explain(
            b,
            volunteer.local_authority,
            participant.local_authority,
            now - participant.waiting_since,
        ),
        waited_since=participant.waiting_since,
        proposed_at=now,
        run_id=run_id,
    )


@dataclass(frozen=True)
class MatchTransition:
    """A coordinator decision or an ending, with its effect on participant and volunteer
    (applied atomically with the event it announces)."""

    match: Match
    """The match after the transition."""
    expected_status: MatchStatus
    participant_from: ParticipantStatus
    participant_to: ParticipantStatus
    at: datetime
    volunteer_active_delta: int = 0
    exclude_as: str | None = None
    """``declined`` or ``previous``: the pair is never proposed again."""
    restart_wait: bool = False
    """The participant's waiting time starts again (a new wait after an ended match)."""
    reenter_pool: bool = False


def accept(
    match: Match, volunteer: Volunteer | None, *, today: date, now: datetime, by: str
) -> MatchTransition:
    if match.status is not MatchStatus.PROPOSED:
        raise InvalidTransition(match.match_id, match.status, "accepted")
    if volunteer is None:
        raise VolunteerIneligible(f"volunteer {match.volunteer_id} is no longer registered")
    if not volunteer.dbs_valid(today):
        raise VolunteerIneligible(
            f"volunteer {volunteer.volunteer_id}'s DBS check expired on "
            f"{volunteer.dbs_expires_on.isoformat()}; renew it before confirming"
        )
    return MatchTransition(
        match=replace(match, status=MatchStatus.CONFIRMED, decided_at=now, decided_by=by),
        expected_status=MatchStatus.PROPOSED,
        participant_from=ParticipantStatus.PROPOSED,
        participant_to=ParticipantStatus.MATCHED,
        at=now,
    )


def decline(match: Match, reason: str, *, now: datetime, by: str) -> MatchTransition:
    """The participant goes back to the pool (keeping their place by waiting time) and
    this pair is never proposed again."""
    if match.status is not MatchStatus.PROPOSED:
        raise InvalidTransition(match.match_id, match.status, "declined")
    return MatchTransition(
        match=replace(
            match,
            status=MatchStatus.DECLINED,
            decided_at=now,
            decided_by=by,
            decline_reason=reason,
        ),
        expected_status=MatchStatus.PROPOSED,
        participant_from=ParticipantStatus.PROPOSED,
        participant_to=ParticipantStatus.WAITING,
        at=now,
        volunteer_active_delta=-1,
        exclude_as="declined",
        reenter_pool=True,
    )


def end(
    match: Match, reason: str, meetings_count: int, *, now: datetime, rematch: bool = False
) -> MatchTransition:
    """A confirmed match ends. With ``rematch`` the participant waits for a new
    volunteer (never this one again); otherwise they leave the pool until they opt in
    again."""
    if match.status is not MatchStatus.CONFIRMED:
        raise InvalidTransition(match.match_id, match.status, "ended")
    if meetings_count < 0:
        raise DomainError("meetings_count cannot be negative")
    return MatchTransition(
        match=replace(
            match,
            status=MatchStatus.ENDED,
            ended_at=now,
            end_reason=reason,
            meetings_count=meetings_count,
        ),
        expected_status=MatchStatus.CONFIRMED,
        participant_from=ParticipantStatus.MATCHED,
        participant_to=ParticipantStatus.WAITING if rematch else ParticipantStatus.ENDED,
        at=now,
        volunteer_active_delta=-1,
        exclude_as="previous",
        restart_wait=rematch,
        reenter_pool=rematch,
    )


@dataclass(frozen=True)
class Withdrawal:
    """A participant taken out of the scheme (matching consent withdrawn, or erased):
    their record after it, and the transitions that close their matches."""

    participant: Participant
    closed: tuple[MatchTransition, ...]
    """In the order the matches were given; each releases the volunteer's place."""
    erased: bool = False
    """The record is kept only as a marker that the learner was erased."""


def withdraw(
    participant: Participant,
    open_matches: Sequence[Match],
    reason: str,
    *,
    now: datetime,
    erase: bool,
) -> Withdrawal:
    """Pending proposals are declined by the system; with ``erase`` confirmed matches are
    ended too (a withdrawn consent leaves a confirmed pair meeting). The participant
    leaves the pool (an ended or matched one keeps their status, unless erased) without
    a background; erasure scrubs every personal field as well."""
    closed: list[MatchTransition] = []
    for match in open_matches:
        if match.status is MatchStatus.PROPOSED:
            closed.append(decline(match, reason, now=now, by=SYSTEM))
        elif erase and match.status is MatchStatus.CONFIRMED:
            closed.append(end(match, reason, match.meetings_count or 0, now=now))
    leaves_pool = participant.status in (ParticipantStatus.WAITING, ParticipantStatus.PROPOSED)
    after = replace(
        participant,
        status=ParticipantStatus.ENDED if erase or leaves_pool else participant.status,
        consent_matching=False,
        background=None,
    )
    if erase:
        after = replace(
            after,
            age_band=None,
            sex=None,
            gender_preference=None,
            languages=(),
            availability=(),
            interests=(),
        )
    return Withdrawal(after, tuple(closed), erased=erase)
