"""Matching's HTTP request and response bodies (pydantic), and how domain state is
shown in them. Background values never appear in a response: only whether one is
recorded."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.matching.domain import (
    SLOT_PATTERN,
    BackgroundFields,
    Match,
    MatchStatus,
    Volunteer,
    VolunteerDetails,
)
from services.matching.domain.checkins import CheckIn
from services.matching.domain.health import HealthReport, MatchHealth
from services.matching.domain.waiting import REASON_LABELS, WaitingReason
from services.matching.use_cases import WaitingView
from shared.contracts.enrolment import NO_CONTROL_CHARACTERS
from shared.contracts.reference import AgeBand, CombinedAuthority, Ethnicity, Religion, Sex

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Slot = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=SLOT_PATTERN)]
LocalAuthority = Annotated[str, StringConstraints(pattern=r"^E0[6-9]\d{6}$")]


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
        """The volunteer's own fields by name; in place of the rest, how many matches are
        active, whether they are paused, and only whether a background is recorded."""
        shown = {f.name: getattr(v, f.name) for f in fields(v) if f.name in cls.model_fields}
        return cls.model_validate(
            {
                **shown,
                "active_matches": v.active,
                "paused": not v.dbs_valid(today),
                "background_recorded": v.background is not None,
            }
        )


class HealthOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
        return cls.model_validate(h)


class MatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
        """Every field by name from the match (sequences as lists); ``health`` apart."""
        out = cls.model_validate(m)
        out.health = HealthOut.of(health) if health is not None else None
        return out


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
    model_config = ConfigDict(from_attributes=True)

    check_in_id: str
    match_id: str
    met_on: date
    recorded_by: Literal["coordinator", "volunteer"]
    recorded_at: datetime

    @classmethod
    def of(cls, c: CheckIn) -> CheckInOut:
        return cls.model_validate(c)


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


def waiting_out(views: list[WaitingView], today: date) -> list[WaitingAuthorityOut]:
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
