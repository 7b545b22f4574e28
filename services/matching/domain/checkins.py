"""Meetings (check-ins) of confirmed pairs: who may record one, and when. Pure, no I/O.

A check-in says that a pair met on a given day. It is recorded by a coordinator of the
match's combined authority or by the match's own volunteer (with a volunteer key), only
on a confirmed match (or an ended one, for a meeting before it ended), never for a day
before the match began (its confirmation) nor a day still to come. One check-in per
match and day: the id is derived from both, so recording the same day twice (a retry,
the volunteer and the coordinator both) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from services.matching.domain import DomainError, InvalidTransition, Match, MatchStatus
from shared.auth import Principal, Role
from shared.contracts.matching import MatchCheckInRecorded

RecordedBy = Literal["coordinator", "volunteer"]
VOLUNTEER_PRINCIPAL_PREFIX = "volunteer:"


class MeetingBeforeMatch(DomainError):
    """The meeting day is before the match began."""


class MeetingInFuture(DomainError):
    """The meeting day has not come yet."""


class MeetingAfterEnd(DomainError):
    """The match had ended before the meeting day."""


class NotYourMatch(DomainError):
    """A volunteer tried to act on a match that is not theirs."""


def volunteer_principal_id(volunteer_id: str) -> str:
    """The principal id of a volunteer's key."""
    return VOLUNTEER_PRINCIPAL_PREFIX + volunteer_id


def volunteer_of(principal: Principal) -> str | None:
    """The volunteer id a volunteer key stands for (``None`` for any other role)."""
    if principal.role is not Role.VOLUNTEER:
        return None
    if not principal.principal_id.startswith(VOLUNTEER_PRINCIPAL_PREFIX):
        return None
    return principal.principal_id.removeprefix(VOLUNTEER_PRINCIPAL_PREFIX)


@dataclass(frozen=True)
class CheckIn:
    check_in_id: str
    match_id: str
    met_on: date
    recorded_by: RecordedBy
    recorder: str
    """The principal id that recorded it (never shown to anyone but coordinators)."""
    recorded_at: datetime


def check_in_id(match_id: str, met_on: date) -> str:
    return f"checkin-{match_id}-{met_on:%Y%m%d}"


def record_check_in(match: Match, met_on: date, *, principal: Principal, now: datetime) -> CheckIn:
    """A check-in of ``match`` on ``met_on`` by ``principal``, or the rule it breaks.

    Scope (the coordinator's combined authorities) is checked by the use case before the
    match is even shown; here: a volunteer only on their own match."""
    volunteer = volunteer_of(principal)
    if principal.role is Role.VOLUNTEER and volunteer != match.volunteer_id:
        raise NotYourMatch(f"match {match.match_id} is not one of your matches")
    if match.status not in (MatchStatus.CONFIRMED, MatchStatus.ENDED) or match.decided_at is None:
        raise InvalidTransition(match.match_id, match.status, "given a meeting")
    began = match.decided_at.date()
    if met_on < began:
        raise MeetingBeforeMatch(
            f"the meeting day {met_on.isoformat()} is before match {match.match_id} "
            f"began on {began.isoformat()}"
        )
    if met_on > now.date():
        raise MeetingInFuture(f"the meeting day {met_on.isoformat()} has not come yet")
    if match.status is MatchStatus.ENDED and match.ended_at and met_on > match.ended_at.date():
        raise MeetingAfterEnd(
            f"match {match.match_id} ended on {match.ended_at.date().isoformat()}, "
            f"before the meeting day {met_on.isoformat()}"
        )
    return CheckIn(
        check_in_id=check_in_id(match.match_id, met_on),
        match_id=match.match_id,
        met_on=met_on,
        recorded_by="volunteer" if principal.role is Role.VOLUNTEER else "coordinator",
        recorder=principal.principal_id,
        recorded_at=now,
    )


def check_in_recorded(match: Match, check_in: CheckIn) -> MatchCheckInRecorded:
    assert match.decided_at is not None
    return MatchCheckInRecorded(
        match_id=match.match_id,
        volunteer_id=match.volunteer_id,
        participant=match.participant,
        enrolment_id=match.enrolment_id,
        combined_authority=match.combined_authority,
        local_authority=match.local_authority,
        check_in_id=check_in.check_in_id,
        met_on=check_in.met_on,
        match_started_at=match.decided_at,
        recorded_by=check_in.recorded_by,
        recorded_at=check_in.recorded_at,
    )
