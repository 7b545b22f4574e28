"""Matching's HTTP edge: coordinators' routes (``Role.COORDINATOR``), each limited to
the combined authorities of their key, and volunteers' own meetings. Thin: validate, call
the use case, answer; refusals become problem+json here. No response or log line
carries anyone's background fields."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from services.matching.domain import (
    DomainError,
    InvalidTransition,
    Match,
    MatchStatus,
    VolunteerIneligible,
)
from services.matching.domain.checkins import (
    MeetingAfterEnd,
    MeetingBeforeMatch,
    MeetingInFuture,
    NotYourMatch,
)
from services.matching.domain.waiting import REASON_LABELS, WaitingReason
from services.matching.entrypoints.dependencies import Coordinator, CoordinatorOrVolunteer, Service
from services.matching.repository import Conflict
from services.matching.schemas import (
    CheckInIn,
    CheckInOut,
    CheckInRecorded,
    DecisionIn,
    EndIn,
    HealthOut,
    LocalAuthority,
    MatchList,
    MatchOut,
    PoolOut,
    VolunteerIn,
    VolunteerKeyOut,
    VolunteerOut,
    WaitingAuthorityOut,
    WaitingOut,
    waiting_out,
)
from services.matching.use_cases import (
    MatchingService,
    NotFound,
    OutOfScope,
    VolunteerNotFound,
)
from shared.contracts.reference import CombinedAuthority
from shared.downloads import CSV_RESPONSES, csv_download
from shared.problems import Problem

router = APIRouter(prefix="/v1", tags=["matching"])


# Each refusal's status, title and problem slug; the first that fits wins (subclasses
# before their bases). Any other DomainError: 422 rule-violated.
_PROBLEMS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (VolunteerNotFound, 404, "Not found", "volunteer-not-found"),
    (NotFound, 404, "Not found", "match-not-found"),
    (NotYourMatch, 403, "Forbidden", "not-your-match"),
    (MeetingBeforeMatch, 422, "Unprocessable", "meeting-before-match"),
    (MeetingInFuture, 422, "Unprocessable", "meeting-in-future"),
    (MeetingAfterEnd, 422, "Unprocessable", "meeting-after-match-ended"),
    (OutOfScope, 403, "Forbidden", "out-of-scope"),
    (InvalidTransition, 409, "Conflict", "invalid-transition"),
    (VolunteerIneligible, 409, "Conflict", "volunteer-ineligible"),
)


def problem_for(exc: Exception) -> Problem:
    if isinstance(exc, Conflict):
        return Problem(409, "Conflict", f"{exc}; reload and retry", slug="concurrent-change")
    for kind, status, title, slug in _PROBLEMS:
        if isinstance(exc, kind):
            return Problem(status, title, str(exc), slug=slug)
    return Problem(422, "Unprocessable", str(exc), slug="rule-violated")


@contextmanager
def domain_problems() -> Iterator[None]:
    """Around a use case: its refusals, and a lost race with another write, answered as
    problem+json (:func:`problem_for`)."""
    try:
        yield
    except (DomainError, Conflict) as exc:
        raise problem_for(exc) from None


async def match_out(service: MatchingService, match: Match) -> MatchOut:
    """A match with its health now (confirmed matches only have one)."""
    return MatchOut.of(match, (await service.health([match])).get(match.match_id))


@router.post(
    "/volunteers",
    response_model=VolunteerOut,
    status_code=201,
    summary="Register (201, id issued) or update (200) a volunteer",
    description="Without volunteer_id a new volunteer is registered under an id the "
    "service issues (in the body and Location), or, with an external_ref already "
    "registered in that combined authority, that volunteer is updated. With "
    "volunteer_id an existing volunteer in your combined authorities is updated; any "
    "other id answers 404, whether or not it exists elsewhere.",
    responses={200: {"model": VolunteerOut, "description": "Updated"}},
)
async def register_volunteer(
    body: VolunteerIn, principal: Coordinator, service: Service, response: Response
) -> VolunteerOut:
    with domain_problems():
        volunteer, created = await service.register_volunteer(
            principal, body.volunteer_id, body.details(), body.external_ref
        )
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = f"/v1/volunteers/{volunteer.volunteer_id}"
    return VolunteerOut.of(volunteer, service.clock().date())


@router.get("/matches", response_model=MatchList, summary="Proposals and matches, newest first")
async def list_matches(
    principal: Coordinator,
    service: Service,
    local_authority: Annotated[LocalAuthority | None, Query()] = None,
    status: Annotated[MatchStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> MatchList:
    with domain_problems():
        matches = await service.list_matches(
            principal, local_authority=local_authority, status=status, limit=limit, offset=offset
        )
    health = await service.health(matches)
    return MatchList(
        items=[MatchOut.of(m, health.get(m.match_id)) for m in matches], limit=limit, offset=offset
    )


MatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,80}$")]


@router.get("/matches/{match_id}", response_model=MatchOut, summary="One proposal or match")
async def get_match(match_id: MatchId, principal: Coordinator, service: Service) -> MatchOut:
    with domain_problems():
        match = await service.get_match(principal, match_id)
    return await match_out(service, match)


@router.post(
    "/matches/{match_id}/decision",
    response_model=MatchOut,
    summary="Accept (→ MatchConfirmed) or decline (→ MatchDeclined) a proposal",
)
async def decide(
    match_id: MatchId, body: DecisionIn, principal: Coordinator, service: Service
) -> MatchOut:
    with domain_problems():
        match = await service.decide(
            principal, match_id, accepted=body.decision == "accept", reason=body.reason
        )
    return await match_out(service, match)


@router.post(
    "/matches/{match_id}/end",
    response_model=MatchOut,
    summary="End a confirmed match (→ MatchEnded), optionally re-matching the participant",
)
async def end_match(
    match_id: MatchId, body: EndIn, principal: Coordinator, service: Service
) -> MatchOut:
    with domain_problems():
        match = await service.end_match(
            principal,
            match_id,
            reason=body.reason,
            meetings_count=body.meetings_count,
            rematch=body.rematch,
        )
    return MatchOut.of(match)


@router.get(
    "/pool",
    response_model=list[PoolOut],
    summary="Waiting lists: participants waiting and volunteers available, per authority",
)
async def pool(
    principal: Coordinator,
    service: Service,
    combined_authority: Annotated[CombinedAuthority | None, Query()] = None,
) -> list[PoolOut]:
    with domain_problems():
        views = await service.pool(principal, combined_authority)
    return [
        PoolOut(
            combined_authority=v.combined_authority,
            volunteers_available=v.volunteers_available,
            waiting=[
                WaitingOut(
                    participant=p.participant,
                    local_authority=p.local_authority,
                    waiting_since=p.waiting_since,
                    declined_count=len(p.declined_volunteers),
                    reason=v.reasons.get(p.participant),
                )
                for p in v.waiting
            ],
        )
        for v in views
    ]


@router.post(
    "/matches/{match_id}/check-ins",
    response_model=CheckInRecorded,
    status_code=201,
    summary="Record a meeting of a confirmed pair (→ MatchCheckInRecorded)",
    description="By a coordinator of the match's combined authority, or by the match's own "
    "volunteer with a volunteer key. One per match and day: the same day again answers 200 "
    "with the stored check-in and publishes nothing. Problems: 404 unknown match (or "
    "outside the coordinator's combined authorities), 403 not-your-match (a volunteer on "
    "someone else's match), 409 invalid-transition (not confirmed), 422 "
    "meeting-before-match, meeting-in-future, meeting-after-match-ended.",
    responses={200: {"model": CheckInRecorded, "description": "Already recorded"}},
)
async def record_check_in(
    match_id: MatchId,
    body: CheckInIn,
    principal: CoordinatorOrVolunteer,
    service: Service,
    response: Response,
) -> CheckInRecorded:
    with domain_problems():
        result = await service.record_check_in(principal, match_id, body.met_on)
    response.status_code = 201 if result.created else 200
    return CheckInRecorded(
        check_in=CheckInOut.of(result.check_in),
        created=result.created,
        health=HealthOut.of(result.health) if result.health is not None else None,
    )


@router.get(
    "/matches/{match_id}/check-ins",
    response_model=list[CheckInOut],
    summary="Meetings recorded on a match, oldest first",
)
async def list_check_ins(
    match_id: MatchId, principal: CoordinatorOrVolunteer, service: Service
) -> list[CheckInOut]:
    with domain_problems():
        return [CheckInOut.of(c) for c in await service.check_ins(principal, match_id)]


VolunteerId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]


@router.get(
    "/volunteers/{volunteer_id}",
    response_model=VolunteerOut,
    summary="A volunteer (404 unless in your combined authorities)",
)
async def get_volunteer(
    volunteer_id: VolunteerId, principal: Coordinator, service: Service
) -> VolunteerOut:
    with domain_problems():
        volunteer = await service.get_volunteer(principal, volunteer_id)
    return VolunteerOut.of(volunteer, service.clock().date())


@router.post(
    "/volunteers/{volunteer_id}/key",
    response_model=VolunteerKeyOut,
    status_code=201,
    summary="Issue a volunteer key (shown once) for recording their own meetings",
)
async def issue_volunteer_key(
    volunteer_id: VolunteerId, principal: Coordinator, service: Service, response: Response
) -> VolunteerKeyOut:
    with domain_problems():
        key = await service.issue_volunteer_key(principal, volunteer_id)
    response.headers["Cache-Control"] = "no-store"
    return VolunteerKeyOut(volunteer_id=volunteer_id, api_key=key)


@router.get(
    "/pool/waiting",
    response_model=list[WaitingAuthorityOut],
    summary="Why each waiting participant is still waiting (the hard constraint in the way)",
)
async def waiting_reasons(
    principal: Coordinator,
    service: Service,
    combined_authority: Annotated[CombinedAuthority | None, Query()] = None,
    local_authority: Annotated[LocalAuthority | None, Query()] = None,
) -> list[WaitingAuthorityOut]:
    with domain_problems():
        views = await service.waiting(principal, combined_authority, local_authority)
    return waiting_out(views, service.clock().date())


@router.get(
    "/pool/waiting.csv",
    response_class=Response,
    responses=CSV_RESPONSES,
    summary="The waiting list with reasons, as CSV (one row per waiting participant)",
)
async def waiting_reasons_csv(
    principal: Coordinator,
    service: Service,
    combined_authority: Annotated[CombinedAuthority | None, Query()] = None,
    local_authority: Annotated[LocalAuthority | None, Query()] = None,
) -> Response:
    with domain_problems():
        views = await service.waiting(principal, combined_authority, local_authority)
    today = service.clock().date()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    steps = [r for r in WaitingReason if r is not WaitingReason.AWAITING_NEXT_RUN]
    writer.writerow(
        [
            "combined_authority",
            "local_authority",
            "participant",
            "waiting_since",
            "days_waiting",
            "reason",
            "reason_label",
            *(f"volunteers_after_{r.value}" for r in steps),
        ]
    )
    for v in views:
        for d in v.diagnoses:
            remaining = {f.reason: f.remaining for f in d.funnel}
            writer.writerow(
                [
                    v.combined_authority.value,
                    d.local_authority,
                    d.participant,
                    d.waiting_since.isoformat(),
                    d.days_waiting(today),
                    d.reason.value,
                    REASON_LABELS[d.reason],
                    *(remaining.get(r, "") for r in steps),
                ]
            )
    return csv_download(buffer.getvalue(), "commonground-waiting-reasons.csv")
