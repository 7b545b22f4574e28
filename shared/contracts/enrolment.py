"""Events published by the enrolment service on ``enrolment.events.v1`` (key: learner pseudonym).

No identifying data (learner ref, name, date of birth, postcode) ever appears here:
learners are a keyed-HMAC pseudonym, ages are bands. Special category fields
(ethnicity, religion) travel inside :class:`Background` with the :class:`Consent`
that governs their use on every event.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.cloudevents import Event
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    CompletionStatus,
    Ethnicity,
    FundModel,
    Level,
    Outcome,
    Programme,
    Religion,
    Sex,
    WithdrawalReason,
)

Pseudonym = str


class Consent(BaseModel):
    """What the learner agreed to. Carried on every event so consumers never guess."""

    model_config = ConfigDict(frozen=True)

    matching: bool = Field(
        default=False,
        description="Explicit consent to be matched on background (special category) fields.",
    )
    research: bool = Field(
        default=False, description="Consent to appear in record-level research exports."
    )


class Background(BaseModel):
    """Background fields. Ethnicity and religion are special category data: aggregate
    equality monitoring may use them; matching an individual on them needs
    ``Consent.matching``."""

    model_config = ConfigDict(frozen=True)

    ethnicity: Ethnicity | None = None
    religion: Religion | None = None
    country_of_birth: str | None = Field(default=None, description="ISO 3166-1 alpha-2")
    first_language: str | None = Field(default=None, description="ISO 639-1/3 code")
    year_of_arrival: int | None = None


class EnrolmentRef(BaseModel):
    """Fields every enrolment event repeats so each event is useful on its own."""

    model_config = ConfigDict(frozen=True)

    enrolment_id: str
    learner: Pseudonym
    provider_ukprn: str
    combined_authority: CombinedAuthority
    local_authority: str
    programme: Programme
    level: Level | None = None
    consent: Consent = Field(default_factory=Consent)


class EnrolmentAccepted(Event, EnrolmentRef):
    event_name = "EnrolmentAccepted"

    learning_aim_ref: str
    start_date: date
    planned_end_date: date
    planned_hours: int
    fund_model: FundModel
    age_band: AgeBand
    sex: Sex | None = None
    background: Background = Field(default_factory=Background)
    wants_conversation_partner: bool = False
    accepted_at: datetime


class AttendanceRecorded(Event, EnrolmentRef):
    event_name = "AttendanceRecorded"

    period_start: date
    period_end: date
    sessions_planned: int
    sessions_attended: int
    hours_attended: float = 0.0


class AssessmentRecorded(Event, EnrolmentRef):
    event_name = "AssessmentRecorded"

    assessed_on: date
    level_reached: Level | None = Field(
        default=None, description="For ESOL: the level the learner was assessed at."
    )
    passed: bool | None = None


class EnrolmentCompleted(Event, EnrolmentRef):
    event_name = "EnrolmentCompleted"

    completed_on: date
    completion_status: CompletionStatus = CompletionStatus.COMPLETED
    outcome: Outcome
    level_reached: Level | None = None


class EnrolmentWithdrawn(Event, EnrolmentRef):
    event_name = "EnrolmentWithdrawn"

    withdrawn_on: date
    completion_status: CompletionStatus = CompletionStatus.WITHDRAWN
    reason: WithdrawalReason


class ParticipantOptedIn(Event, EnrolmentRef):
    """A learner asked for a conversation partner. ``background`` is present only when
    ``consent.matching`` is true; otherwise the scorer never sees it."""

    event_name = "ParticipantOptedIn"

    age_band: AgeBand
    sex: Sex | None = None
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = Field(
        default=(), description="Slots like 'mon-am', 'sat-pm' (weekday-period)."
    )
    interests: tuple[str, ...] = ()
    gender_preference: Sex | None = None
    background: Background | None = None
    opted_in_at: datetime


ENROLMENT_EVENTS: tuple[type[Event], ...] = (
    EnrolmentAccepted,
    AttendanceRecorded,
    AssessmentRecorded,
    EnrolmentCompleted,
    EnrolmentWithdrawn,
    ParticipantOptedIn,
)
