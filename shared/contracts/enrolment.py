"""Events published by the enrolment service on ``enrolment.events.v1`` (key: learner pseudonym).

No identifying data (learner ref, name, date of birth, postcode) ever appears here:
learners are a keyed-HMAC pseudonym, ages are bands. Special category fields
(ethnicity, religion) travel inside :class:`Background` with the :class:`Consent`
that governs their use on every event.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from shared.cloudevents import Event
from shared.contracts.privacy import SealedBox, WrappedKey
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


class SealedPersonalData(BaseModel):
    """What a :class:`SealedBox` on an enrolment event holds once opened."""

    model_config = ConfigDict(frozen=True)

    background: Background | None = None
    languages: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()


_SEALED_DESCRIPTION = (
    "Personal fields (background, languages, interests) sealed under the learner's data "
    "key (crypto-shredding). When present, the clear fields are left empty; open it with "
    "the key from LearnerKeyIssued. After LearnerErased it can never be opened."
)


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
    sealed: SealedBox | None = Field(default=None, description=_SEALED_DESCRIPTION)


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
    sealed: SealedBox | None = Field(default=None, description=_SEALED_DESCRIPTION)


class BreakInLearningStarted(Event, EnrolmentRef):
    """The learner agreed a break in learning (ILR CompStatus 6)."""

    event_name = "BreakInLearningStarted"

    break_started_on: date
    completion_status: CompletionStatus = CompletionStatus.BREAK
    expected_return_on: date | None = None


class LearningResumed(Event, EnrolmentRef):
    """The learner returned from a break (ILR CompStatus back to 1, continuing)."""

    event_name = "LearningResumed"

    resumed_on: date
    completion_status: CompletionStatus = CompletionStatus.CONTINUING


class OutcomeRecorded(Event, EnrolmentRef):
    """The outcome of a completed enrolment became known after completion (e.g. an exam
    result replacing ILR Outcome 8, not yet known)."""

    event_name = "OutcomeRecorded"

    recorded_on: date
    outcome: Outcome
    level_reached: Level | None = None


class ConsentChanged(Event, EnrolmentRef):
    """The learner changed their consent on this enrolment; ``consent`` is the new one.
    Withdrawn matching consent: matching drops their background, takes them out of the
    pool and withdraws pending proposals. ``sealed`` carries the background (sealed) when
    matching consent was given."""

    event_name = "ConsentChanged"

    previous: Consent
    changed_at: datetime
    sealed: SealedBox | None = Field(default=None, description=_SEALED_DESCRIPTION)


class LearnerKeyIssued(Event):
    """A learner's data key, wrapped under the platform key-wrapping key. Published on
    the learner's key before any event sealed under it; consumers keep it (wrapped) in
    their own store until LearnerErased."""

    event_name = "LearnerKeyIssued"

    learner: Pseudonym
    key_id: str
    wrapped: WrappedKey
    issued_at: datetime


class LearnerErased(Event):
    """Right to erasure: the learner's data key is destroyed. Every service deletes its
    copy of the key and every personal field it derived, and from now on treats the
    learner's events as anonymous: still counted in aggregates, never matched, never
    shown."""

    event_name = "LearnerErased"

    learner: Pseudonym
    erased_at: datetime
    enrolment_ids: tuple[str, ...] = ()


ENROLMENT_EVENTS: tuple[type[Event], ...] = (
    EnrolmentAccepted,
    AttendanceRecorded,
    AssessmentRecorded,
    EnrolmentCompleted,
    EnrolmentWithdrawn,
    ParticipantOptedIn,
    BreakInLearningStarted,
    LearningResumed,
    OutcomeRecorded,
    ConsentChanged,
    LearnerKeyIssued,
    LearnerErased,
)


# --------------------------------------------------------------------------------------
# Inbound: what providers send (HTTP body of POST /v1/enrolments, or a record on
# ``enrolment.inbound.v1`` keyed by the provider's UKPRN), and what a refusal looks like
# on ``enrolment.rejected.v1``. Field formats live here; cross-field rules (local
# authority within the combined authority, dates in order, level valid for the
# programme, provider contracted for the authority) are the enrolment service's domain.
# --------------------------------------------------------------------------------------

LearnerRef = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9 ]{1,12}$")
]
LearningAimRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{8}$")]
LocalAuthorityCode = Annotated[str, StringConstraints(pattern=r"^E0[6-9][0-9]{6}$")]
Postcode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_upper=True,
        pattern=r"(?i)^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$",
    ),
]
# No control characters (C0 incl. NUL, DEL, C1): they corrupt logs, CSVs and other
# systems the names reach, and are never part of a name.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1F\x7F-\x9F]*$"
PersonName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS
    ),
]
CountryCode = Annotated[str, StringConstraints(to_upper=True, pattern=r"(?i)^[A-Z]{2}$")]
LanguageCode = Annotated[str, StringConstraints(to_lower=True, pattern=r"(?i)^[a-z]{2,3}$")]
AvailabilitySlot = Annotated[
    str,
    StringConstraints(to_lower=True, pattern=r"(?i)^(mon|tue|wed|thu|fri|sat|sun)-(am|pm|eve)$"),
]
Interest = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, pattern=r"(?i)^[a-z0-9][a-z0-9 _-]{0,39}$"
    ),
]
SubmissionRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]


class _SubmittedConsent(Consent):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _strict_consent(value: object) -> object:
    """Consent as a provider sends it: unknown keys (a typo like ``matchng``, operators
    like ``$set``) are refused, never silently dropped. Events keep the tolerant
    :class:`Consent` so consumers accept later additions."""
    if isinstance(value, dict):
        return Consent.model_validate(_SubmittedConsent.model_validate(value).model_dump())
    return value


class EnrolmentSubmission(Event):
    """One enrolment as a provider submits it. ILR field names are noted where the ILR has
    the field. Unknown fields are refused (a typo must not silently drop data).

    Personal fields (``learner_ref``, names, ``date_of_birth``, ``postcode``) never leave
    the enrolment service: downstream events carry a learner pseudonym and an age band.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_name = "EnrolmentSubmitted"

    submission_ref: SubmissionRef | None = Field(
        default=None,
        description="Optional correlation id of the provider's own choosing, echoed in "
        "results and rejections. Must not contain personal data.",
    )
    learner_ref: LearnerRef = Field(description="ILR LearnRefNumber (unique per provider).")
    given_names: PersonName | None = Field(default=None, description="ILR GivenNames.")
    family_name: PersonName | None = Field(default=None, description="ILR FamilyName.")
    postcode: Postcode | None = Field(default=None, description="ILR Postcode (home).")
    date_of_birth: date = Field(description="ILR DateOfBirth.")
    sex: Sex = Field(description="ILR Sex.")
    ethnicity: Ethnicity | None = Field(
        default=None,
        description="ILR Ethnicity as the ONS 2021 19-category group; omit if not provided.",
    )
    religion: Religion | None = Field(default=None, description="ONS 2021 religion (optional).")
    country_of_birth: CountryCode | None = Field(default=None, description="ISO 3166-1 alpha-2.")
    first_language: LanguageCode | None = Field(default=None, description="ISO 639-1/3 code.")
    year_of_arrival: int | None = Field(
        default=None, ge=1900, le=2100, description="Year of arrival in the UK."
    )
    combined_authority: CombinedAuthority = Field(
        description="ONS code of the mayoral combined authority funding the learning."
    )
    local_authority: LocalAuthorityCode = Field(
        description="ONS LAD code of the learner's home local authority."
    )
    learning_aim_ref: LearningAimRef = Field(description="ILR LearnAimRef.")
    programme: Programme
    level: Level | None = Field(
        default=None, description="Required for every programme but employability."
    )
    start_date: date = Field(description="ILR LearnStartDate.")
    planned_end_date: date = Field(description="ILR LearnPlanEndDate.")
    planned_hours: int = Field(ge=1, le=9999, description="ILR PlanLearnHours.")
    fund_model: FundModel = Field(description="ILR FundModel.")
    consent: Annotated[Consent, BeforeValidator(_strict_consent)] = Field(
        default_factory=Consent,
        description="Consent flags; both default to false. Unknown keys are refused.",
    )
    wants_conversation_partner: bool = Field(
        default=False, description="Opt in to the befriending scheme (ParticipantOptedIn)."
    )
    partner_gender_preference: Sex | None = None
    availability: tuple[AvailabilitySlot, ...] = Field(
        default=(), max_length=21, description="Slots like 'mon-am', 'sat-pm', 'wed-eve'."
    )
    interests: tuple[Interest, ...] = Field(default=(), max_length=20)


class RejectionCode(StrEnum):
    """Why a submission was refused (bounded: also a metric label)."""

    SCHEMA_INVALID = "schema_invalid"
    UNKNOWN_PROVIDER = "unknown_provider"
    NOT_CONTRACTED = "not_contracted"
    LOCAL_AUTHORITY_MISMATCH = "local_authority_mismatch"
    DATES_OUT_OF_ORDER = "dates_out_of_order"
    LEVEL_INVALID_FOR_PROGRAMME = "level_invalid_for_programme"
    AGE_OUT_OF_RANGE = "age_out_of_range"
    YEAR_OF_ARRIVAL_INVALID = "year_of_arrival_invalid"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    UNAUTHENTICATED = "unauthenticated"
    DATE_OUT_OF_RANGE = "date_out_of_range"
    FUND_MODEL_INVALID = "fund_model_invalid"


class RejectionReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: RejectionCode
    pointer: str = Field(description="JSON pointer into the submission, e.g. '/start_date'.")
    field: str = Field(description="Dotted field path, e.g. 'consent.matching'.")
    message: str = Field(description="What is wrong. Never echoes the submitted value.")
    type: str = Field(description="Fine-grained error type (pydantic type or the code).")


class InboundCoordinates(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    ce_id: str | None = None


class SubmissionRejected(Event):
    """A submission from ``enrolment.inbound.v1`` was refused (key: provider ref).

    The submission itself is *identified* (coordinates, ``submission_ref``), not copied:
    it would carry the learner ref and date of birth, which never leave the service.
    """

    event_name = "SubmissionRejected"

    provider_ref: str | None = Field(description="The record key as sent (provider UKPRN).")
    provider_ukprn: str | None = Field(
        default=None, description="Set when the key names a registered provider."
    )
    submission_ref: str | None = None
    combined_authority: CombinedAuthority | None = None
    source: InboundCoordinates
    reasons: tuple[RejectionReason, ...]
    rejected_at: datetime


INBOUND_SUBMISSIONS: tuple[type[Event], ...] = (EnrolmentSubmission,)
REJECTION_EVENTS: tuple[type[Event], ...] = (SubmissionRejected,)
