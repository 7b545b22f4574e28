"""Matching's subscribers and routes: thin, validate → use case → response.

HTTP is for coordinators (``Role.COORDINATOR``), each limited to the combined
authorities of their key. No response or log line carries anyone's background fields.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.matching.domain import (
    SLOT_PATTERN,
    BackgroundFields,
    DomainError,
    InvalidParticipant,
    InvalidTransition,
    Match,
    MatchStatus,
    Volunteer,
    VolunteerDetails,
    VolunteerIneligible,
)
from services.matching.domain.checkins import (
    CheckIn,
    MeetingAfterEnd,
    MeetingBeforeMatch,
    MeetingInFuture,
    NotYourMatch,
)
from services.matching.domain.health import HealthReport, MatchHealth
from services.matching.domain.waiting import REASON_LABELS, WaitingReason
from services.matching.repository import Conflict
from services.matching.settings import MatchingSettings
from services.matching.use_cases import (
    MatchingService,
    NotFound,
    OutOfScope,
    VolunteerNotFound,
    WaitingView,
)
from shared import topics
from shared.auth import ApiKeyStore, Principal, Role, authenticate
from shared.cloudevents import Event
from shared.consuming import (
    Record,
    consume_policy,
    dead_letter_to,
    decode_or_dead_letter,
    exclude_from_commit,
    raw_body_decoder,
    tolerant_batch_parser,
)
from shared.contracts.enrolment import (
    NO_CONTROL_CHARACTERS,
    Background,
    ConsentChanged,
    LearnerErased,
    LearnerKeyIssued,
    ParticipantOptedIn,
)
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Religion,
    Sex,
)
from shared.contracts.registry import registry_for
from shared.crypto import KeyRing
from shared.dead_letters import RetryPolicy, retrying
from shared.downloads import CSV_RESPONSES, csv_download
from shared.learner_keys import KeyBatch, MongoLearnerKeys
from shared.mongo import mongo_ping
from shared.positions import (
    LogFence,
    MongoPositions,
    Position,
    TopicPartition,
    advanced_positions,
    ce_id_of,
    rewind,
)
from shared.problems import Problem
from shared.service import Runtime, runtime_of

logger = logging.getLogger(__name__)

ENROLMENT_EVENTS = registry_for(topics.ENROLMENT_EVENTS)
PRIVACY_EVENTS = (ParticipantOptedIn, LearnerKeyIssued, LearnerErased, ConsentChanged)


def background_fields(background: Background) -> BackgroundFields:
    return BackgroundFields(
        ethnicity=background.ethnicity,
        religion=background.religion,
        country_of_birth=background.country_of_birth,
    )


@dataclass(frozen=True)
class MatchingContext:
    """What the lifespan builds and the handlers use (``runtime.state["matching"]``)."""

    service: MatchingService
    keys: ApiKeyStore
    learner_keys: MongoLearnerKeys | None = None
    key_ring: KeyRing | None = None
    positions: MongoPositions | None = None
    fence: LogFence | None = None


def context_of(runtime: Runtime) -> MatchingContext:
    context: MatchingContext = runtime.state["matching"]
    return context


# ---------------------------------------------------------------------------- Kafka


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    router = KafkaRouter()
    settings = runtime.settings
    if not isinstance(settings, MatchingSettings):
        raise TypeError("the matching service needs MatchingSettings")
    retry_policy = RetryPolicy()

    # Batches, so that the log fence checks each partition's position once per batch
    # (a topic re-created under a running consumer is only visible that way:
    # shared.positions.LogFence); the records are still handled one at a time, in order.
    # NACK_ON_ERROR: commit exactly the batch's offsets (shared.consuming) only after the
    # handler returns; an exception seeks back so the batch is redelivered
    # (at-least-once; opt-ins are de-duplicated by event id, the other effects are
    # idempotent). Poison is dead-lettered and acked. Transient failures are retried
    # with backoff; if the database is down the batch is rewound and retried until it is
    # back, if it answers the record is dead-lettered (exhausted). docs/delivery.md.
    @router.subscriber(
        topics.ENROLMENT_EVENTS,
        group_id=settings.group_id,
        auto_offset_reset=settings.consumer_offset_reset,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser,
        decoder=raw_body_decoder,
    )
    async def on_enrolment_events(message: KafkaMessage) -> None:
        raw = message.raw_message
        records: tuple[Record, ...] = raw if isinstance(raw, tuple) else (raw,)
        ctx = context_of(runtime)
        positions, fence = ctx.positions, ctx.fence
        stored: dict[TopicPartition, Position] = {}
        if positions is not None and fence is not None:
            first: dict[TopicPartition, int] = {}
            for record in records:
                first.setdefault((record.topic, record.partition), record.offset)
            stored = await retrying(lambda: positions.load(first), retry_policy)
            replaced = await fence.replaced(first, stored)
            if replaced:
                # Another log: read it again from its start.
                exclude_from_commit(message, replaced)
                sought = await rewind(message.consumer, replaced)
                if sought:
                    await retrying(
                        lambda: positions.save({tp: Position(-1) for tp in sought}),
                        retry_policy,
                    )
                records = tuple(r for r in records if (r.topic, r.partition) not in replaced)
        for record in records:
            await consume_policy(
                [record],
                lambda record=record: handle_enrolment_event(record),  # type: ignore[misc]
                None,  # one record: after the retries, an outage waits, a failure dead-letters
                healthy=lambda: mongo_ping(runtime.mongo),
                failed=dead_letter_to(runtime.dead_letters),
                what="enrolment event",
            )
        if positions is not None and records:
            handled = advanced_positions(
                (((r.topic, r.partition), r.offset, ce_id_of(r.headers)) for r in records),
                stored,
                set(),
            )
            await retrying(lambda: positions.save(handled), retry_policy)

    async def handle_enrolment_event(record: Record) -> None:
        event = await decode_or_dead_letter(record, ENROLMENT_EVENTS, runtime.dead_letters)
        if event is None or not isinstance(event.data, PRIVACY_EVENTS):
            return
        ctx = context_of(runtime)
        service = ctx.service
        data: Event = event.data
        if ctx.learner_keys is not None and ctx.key_ring is not None:
            store, ring = ctx.learner_keys, ctx.key_ring
            keys = await retrying(lambda: KeyBatch.load(store, ring, [data]), retry_policy)
            keys.note(data)
            await retrying(lambda: keys.save(store), retry_policy)
            if isinstance(data, LearnerErased):
                erased = data.learner
                await retrying(lambda: service.erase_participant(erased), retry_policy)
                logger.info("learner erased: participant data scrubbed")
                return
            if isinstance(data, ConsentChanged):
                changed: ConsentChanged = data
                opened = keys.personal(changed)
                background = (
                    background_fields(opened.background)
                    if opened is not None and opened.background is not None
                    else None
                )
                await retrying(
                    lambda: service.consent_changed(
                        changed.learner, changed.consent.matching, background
                    ),
                    retry_policy,
                )
                return
            if not isinstance(data, ParticipantOptedIn):
                return
            if keys.is_erased(data.learner):
                logger.info("opt-in of an erased learner ignored")
                return
            data = keys.reveal(data)
        if not isinstance(data, ParticipantOptedIn):
            return
        opt_in = data
        try:
            added = await retrying(lambda: service.record_opt_in(event.id, opt_in), retry_policy)
        except InvalidParticipant as exc:
            await runtime.dead_letters.send(record, exc, kind="poison")
            return
        logger.info(
            "participant opt-in %s (enrolment %s)",
            "recorded" if added else "already processed",
            opt_in.enrolment_id,
        )

    return [router]


# ---------------------------------------------------------------------------- HTTP

router = APIRouter(prefix="/v1", tags=["matching"])
bearer = HTTPBearer(auto_error=False, description="A coordinator's API key.")

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Slot = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=SLOT_PATTERN)]
LocalAuthority = Annotated[str, StringConstraints(pattern=r"^E0[6-9]\d{6}$")]


def caller(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's principal if its key has one of ``roles``, else 401/403."""

    async def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        keys = context_of(runtime_of(request)).keys
        header = f"Bearer {credentials.credentials}" if credentials else None
        return await authenticate(keys, header, roles)

    return authenticated


def service_of(request: Request) -> MatchingService:
    return context_of(runtime_of(request)).service


Coordinator = Annotated[Principal, Depends(caller(Role.COORDINATOR))]
CoordinatorOrVolunteer = Annotated[Principal, Depends(caller(Role.COORDINATOR, Role.VOLUNTEER))]
Service = Annotated[MatchingService, Depends(service_of)]


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


class BackgroundIn(BaseModel):
    """Special category data: stored only with consent, never published or logged."""

    model_config = ConfigDict(extra="forbid")

    ethnicity: Ethnicity | None = None
    religion: Religion | None = None
    country_of_birth: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2"
    )


class VolunteerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volunteer_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Only to update: the id issued when the volunteer was registered. An "
        "id that is unknown or outside your combined authorities answers 404 "
        "volunteer-not-found (ids are never chosen by the caller).",
    )
    external_ref: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$",
        description="Your own reference for the volunteer, unique within the combined "
        "authority: the volunteer registered with it there is updated (200), otherwise a "
        "new volunteer is registered under an issued id (201). Makes registration "
        "idempotent. Not together with volunteer_id.",
    )
    local_authority: LocalAuthority = Field(description="ONS LAD code of the volunteer's borough.")
    capacity: int = Field(ge=1, le=10, description="How many participants at once.")
    dbs_expires_on: date = Field(description="Expiry date of the volunteer's DBS check.")
    availability: list[Slot] = Field(
        min_length=1, max_length=21, description="Slots like 'mon-am', 'sat-pm', 'thu-eve'."
    )
    languages: list[Tag] = Field(default_factory=list, max_length=20)
    interests: list[Tag] = Field(default_factory=list, max_length=30)
    gender: Sex | None = None
    gender_preference: Sex | None = Field(
        default=None, description="Only be matched with participants of this sex."
    )
    age_band: AgeBand | None = None
    consent_to_match_on_background: bool = Field(
        default=False,
        description="The volunteer's explicit consent to be matched on background "
        "(age band, ethnicity, religion, country of birth). Without it the background is "
        "not stored.",
    )
    background: BackgroundIn | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> VolunteerIn:
        if self.volunteer_id is not None and self.external_ref is not None:
            raise ValueError("give volunteer_id or external_ref, not both")
        return self

    def details(self) -> VolunteerDetails:
        bg = self.background
        return VolunteerDetails(
            local_authority=self.local_authority,
            capacity=self.capacity,
            dbs_expires_on=self.dbs_expires_on,
            languages=tuple(self.languages),
            availability=tuple(self.availability),
            interests=tuple(self.interests),
            gender=self.gender,
            gender_preference=self.gender_preference,
            age_band=self.age_band,
            consent_matching=self.consent_to_match_on_background,
            background=(
                BackgroundFields(bg.ethnicity, bg.religion, bg.country_of_birth)
                if bg is not None and self.consent_to_match_on_background
                else None
            ),
        )


class VolunteerOut(BaseModel):
    volunteer_id: str = Field(description="Issued by the service at registration.")
    external_ref: str | None = None
    combined_authority: CombinedAuthority
    local_authority: str
    capacity: int
    active_matches: int
    dbs_expires_on: date
    paused: bool = Field(description="True while the DBS check has lapsed: no new proposals.")
    availability: list[str]
    languages: list[str]
    interests: list[str]
    gender: Sex | None
    gender_preference: Sex | None
    background_recorded: bool
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, v: Volunteer, today: date) -> VolunteerOut:
        return cls(
            volunteer_id=v.volunteer_id,
            external_ref=v.external_ref,
            combined_authority=v.combined_authority,
            local_authority=v.local_authority,
            capacity=v.capacity,
            active_matches=v.active,
            dbs_expires_on=v.dbs_expires_on,
            paused=not v.dbs_valid(today),
            availability=list(v.availability),
            languages=list(v.languages),
            interests=list(v.interests),
            gender=v.gender,
            gender_preference=v.gender_preference,
            background_recorded=v.background is not None,
            registered_at=v.registered_at,
            updated_at=v.updated_at,
        )


class HealthOut(BaseModel):
    state: MatchHealth = Field(
        description="on_track: a meeting (or the confirmation, while none is recorded) "
        "within MATCHING_HEALTH_CHECK_IN_AFTER_DAYS days (default 14); needs_check_in: "
        "longer ago, up to MATCHING_HEALTH_LAPSED_AFTER_DAYS (default 28); lapsed: longer "
        "ago than that."
    )
    days_since_contact: int = Field(
        description="Days from the last meeting (or the confirmation) to today."
    )
    last_met_on: date | None
    check_ins: int = Field(description="Meetings recorded on this match.")

    @classmethod
    def of(cls, h: HealthReport) -> HealthOut:
        return cls(
            state=h.state,
            days_since_contact=h.days_since_contact,
            last_met_on=h.last_met_on,
            check_ins=h.check_ins,
        )


class MatchOut(BaseModel):
    match_id: str
    status: MatchStatus
    volunteer_id: str
    participant: str
    enrolment_id: str | None
    combined_authority: CombinedAuthority
    local_authority: str
    score: float
    score_components: dict[str, float]
    bridging_dimensions: list[str]
    shared_slots: list[str]
    shared_interests: list[str]
    explanation: str
    waited_since: datetime
    proposed_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decline_reason: str | None
    ended_at: datetime | None
    end_reason: str | None
    meetings_count: int | None
    flags: list[str] = Field(
        description="E.g. 'volunteer_dbs_expired': the volunteer's DBS check has lapsed."
    )
    health: HealthOut | None = Field(
        default=None,
        description="Confirmed matches only: whether the pair is still meeting, from the "
        "meetings recorded (POST /v1/matches/{id}/check-ins).",
    )

    @classmethod
    def of(cls, m: Match, health: HealthReport | None = None) -> MatchOut:
        return cls(
            health=HealthOut.of(health) if health is not None else None,
            match_id=m.match_id,
            status=m.status,
            volunteer_id=m.volunteer_id,
            participant=m.participant,
            enrolment_id=m.enrolment_id,
            combined_authority=m.combined_authority,
            local_authority=m.local_authority,
            score=m.score,
            score_components=dict(m.score_components),
            bridging_dimensions=list(m.bridging_dimensions),
            shared_slots=list(m.shared_slots),
            shared_interests=list(m.shared_interests),
            explanation=m.explanation,
            waited_since=m.waited_since,
            proposed_at=m.proposed_at,
            decided_at=m.decided_at,
            decided_by=m.decided_by,
            decline_reason=m.decline_reason,
            ended_at=m.ended_at,
            end_reason=m.end_reason,
            meetings_count=m.meetings_count,
            flags=list(m.flags),
        )


class MatchList(BaseModel):
    items: list[MatchOut]
    limit: int
    offset: int


Reason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=500, pattern=NO_CONTROL_CHARACTERS
    ),
]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "decline"]
    reason: Reason | None = Field(default=None, description="Required when declining.")

    @model_validator(mode="after")
    def _reason_for_decline(self) -> DecisionIn:
        if self.decision == "decline" and not self.reason:
            raise ValueError("a decline needs a reason")
        return self


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    meetings_count: int = Field(ge=0, le=10_000)
    rematch: bool = Field(
        default=False,
        description="Put the participant back in the pool for a new volunteer "
        "(never this one again).",
    )


class WaitingOut(BaseModel):
    participant: str
    local_authority: str
    waiting_since: datetime
    declined_count: int
    reason: WaitingReason | None = Field(
        default=None,
        description="The hard constraint that keeps them waiting (GET /v1/pool/waiting "
        "explains it).",
    )


class CheckInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    met_on: date = Field(
        description="The day the pair met: not before the match was confirmed, not in the "
        "future (nor after the match ended)."
    )


class CheckInOut(BaseModel):
    check_in_id: str
    match_id: str
    met_on: date
    recorded_by: Literal["coordinator", "volunteer"]
    recorded_at: datetime

    @classmethod
    def of(cls, c: CheckIn) -> CheckInOut:
        return cls(
            check_in_id=c.check_in_id,
            match_id=c.match_id,
            met_on=c.met_on,
            recorded_by=c.recorded_by,
            recorded_at=c.recorded_at,
        )


class CheckInRecorded(BaseModel):
    check_in: CheckInOut
    created: bool = Field(description="False when this match and day were recorded before.")
    health: HealthOut | None = Field(
        description="The match's health now (null once the match has ended)."
    )


class VolunteerKeyOut(BaseModel):
    volunteer_id: str
    api_key: str = Field(
        description="Shown once; give it to the volunteer. It may only record and list "
        "meetings of their own matches. Earlier keys of this volunteer stop working."
    )


class FunnelStepOut(BaseModel):
    reason: WaitingReason
    remaining: int = Field(description="Volunteers still possible after this constraint.")


class WaitingReasonOut(BaseModel):
    participant: str = Field(description="Learner pseudonym.")
    local_authority: str
    waiting_since: datetime
    days_waiting: int
    reason: WaitingReason = Field(
        description="The first hard constraint, in the order no_volunteers, no_shared_slot, "
        "gender_preference, only_declined_pairs, no_valid_dbs, no_capacity, that leaves no "
        "volunteer for them; awaiting_next_run when a feasible volunteer exists."
    )
    reason_label: str
    explanation: str
    funnel: list[FunnelStepOut]


class WaitingAuthorityOut(BaseModel):
    combined_authority: CombinedAuthority
    volunteers_registered: int
    reasons: dict[WaitingReason, int] = Field(description="Participants waiting per reason.")
    waiting: list[WaitingReasonOut]


class PoolOut(BaseModel):
    combined_authority: CombinedAuthority
    volunteers_available: int
    waiting: list[WaitingOut]


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


def _waiting_out(views: list[WaitingView], today: date) -> list[WaitingAuthorityOut]:
    out = []
    for v in views:
        counts = {reason: 0 for reason in WaitingReason}
        for d in v.diagnoses:
            counts[d.reason] += 1
        out.append(
            WaitingAuthorityOut(
                combined_authority=v.combined_authority,
                volunteers_registered=v.volunteers,
                reasons=counts,
                waiting=[
                    WaitingReasonOut(
                        participant=d.participant,
                        local_authority=d.local_authority,
                        waiting_since=d.waiting_since,
                        days_waiting=d.days_waiting(today),
                        reason=d.reason,
                        reason_label=REASON_LABELS[d.reason],
                        explanation=d.explanation,
                        funnel=[
                            FunnelStepOut(reason=f.reason, remaining=f.remaining) for f in d.funnel
                        ],
                    )
                    for d in v.diagnoses
                ],
            )
        )
    return out


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
    return _waiting_out(views, service.clock().date())


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
