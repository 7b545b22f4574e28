"""Enrolment domain: submission rules, pseudonyms, the ILR lifecycle. Pure: no I/O.

Everything the three intake channels (single HTTP, batch HTTP, Kafka) decide about a
submission is decided here, so that they refuse exactly the same things for exactly the
same reasons. Error messages never echo submitted values (they may be personal data).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.cloudevents import Event
from shared.contracts.enrolment import (
    AssessmentRecorded,
    AttendanceRecorded,
    Background,
    BreakInLearningStarted,
    EnrolmentAccepted,
    EnrolmentCompleted,
    EnrolmentSubmission,
    EnrolmentWithdrawn,
    LearningResumed,
    OutcomeRecorded,
    ParticipantOptedIn,
    RejectionCode,
    RejectionReason,
)
from shared.contracts.reference import (
    ADULT_SKILLS_FUND_FROM,
    ESOL_LEVELS,
    AgeBand,
    CombinedAuthority,
    CompletionStatus,
    FundModel,
    Level,
    Outcome,
    Programme,
    WithdrawalReason,
    combined_authority_of,
)

# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field. ``pointer`` is a JSON pointer into the document."""

    code: RejectionCode
    pointer: str
    message: str
    type: str

    @property
    def field(self) -> str:
        return ".".join(self.pointer.strip("/").split("/")) if self.pointer else ""

    def at(self, prefix: str) -> FieldError:
        """The same error, with its pointer inside a larger document (``/items/3``)."""
        return replace(self, pointer=f"{prefix}{self.pointer}")

    def as_reason(self) -> RejectionReason:
        return RejectionReason(
            code=self.code,
            pointer=self.pointer,
            field=self.field,
            message=self.message,
            type=self.type,
        )


def _rule(code: RejectionCode, pointer: str, message: str) -> FieldError:
    return FieldError(code=code, pointer=pointer, message=message, type=code.value)


def schema_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic errors → field errors, without the input values."""
    out = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            FieldError(
                code=RejectionCode.SCHEMA_INVALID,
                pointer="/" + "/".join(loc) if loc else "",
                message=err.get("msg", "invalid"),
                type=err.get("type", "value_error"),
            )
        )
    return out


# ------------------------------------------------------------------------- pseudonyms


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed HMAC-SHA256 pseudonyms. Stable for a given key; not reversible without it.

    Learner refs are unique only within a provider (ILR LearnRefNumber), so both the
    learner pseudonym and the enrolment id are scoped by the provider's UKPRN.
    """

    key: bytes = field(repr=False)

    def _mac(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def learner(self, ukprn: str, learner_ref: str) -> str:
        return "lp_" + self._mac("learner", ukprn, learner_ref)[:32]

    def enrolment_id(self, ukprn: str, submission: EnrolmentSubmission) -> str:
        """Deterministic id of the natural key (provider, learner, aim, start date): the
        same submission always maps to the same enrolment, whatever the channel."""
        return self.enrolment_id_of(
            ukprn, submission.learner_ref, submission.learning_aim_ref, submission.start_date
        )

    def enrolment_id_of(
        self, ukprn: str, learner_ref: str, learning_aim_ref: str, start_date: date
    ) -> str:
        """The enrolment id of a natural key (ILR intake knows it before a submission)."""
        return (
            "enr_"
            + self._mac(
                "enrolment", ukprn, learner_ref, learning_aim_ref.upper(), start_date.isoformat()
            )[:32]
        )


def fingerprint(model: BaseModel, *, exclude: set[str] | None = None) -> str:
    """A content hash (for "same submission again?" checks); kept only in our database."""
    canonical = json.dumps(
        model.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def submission_fingerprint(submission: EnrolmentSubmission) -> str:
    return fingerprint(submission, exclude={"submission_ref"})


# --------------------------------------------------------------------------- age bands

MINIMUM_AGE = 16
MAXIMUM_AGE = 120

_AGE_BANDS: tuple[tuple[int, AgeBand], ...] = (
    (65, AgeBand.AGE_65_PLUS),
    (50, AgeBand.AGE_50_64),
    (35, AgeBand.AGE_35_49),
    (25, AgeBand.AGE_25_34),
    (19, AgeBand.AGE_19_24),
    (16, AgeBand.AGE_16_18),
)


def age_on(date_of_birth: date, on: date) -> int:
    before_birthday = (on.month, on.day) < (date_of_birth.month, date_of_birth.day)
    return on.year - date_of_birth.year - int(before_birthday)


def age_band(date_of_birth: date, on: date) -> AgeBand | None:
    """The band of the learner's age on ``on`` (the start date); None below 16."""
    age = age_on(date_of_birth, on)
    for lower, band in _AGE_BANDS:
        if age >= lower:
            return band
    return None


# ---------------------------------------------------------------------- level per programme


@dataclass(frozen=True)
class LevelRule:
    levels: tuple[Level, ...]
    required: bool


_ENTRY_1_TO_LEVEL_2 = (Level.ENTRY_1, Level.ENTRY_2, Level.ENTRY_3, Level.LEVEL_1, Level.LEVEL_2)

PROGRAMME_LEVELS: Mapping[Programme, LevelRule] = {
    Programme.ESOL: LevelRule(ESOL_LEVELS, required=True),
    Programme.FUNCTIONAL_MATHS: LevelRule(_ENTRY_1_TO_LEVEL_2, required=True),
    Programme.FUNCTIONAL_ENGLISH: LevelRule(_ENTRY_1_TO_LEVEL_2, required=True),
    Programme.DIGITAL: LevelRule((Level.ENTRY_3, Level.LEVEL_1), required=True),
    Programme.EMPLOYABILITY: LevelRule(_ENTRY_1_TO_LEVEL_2, required=False),
    Programme.VOCATIONAL: LevelRule((Level.LEVEL_1, Level.LEVEL_2, Level.LEVEL_3), required=True),
}


def level_error(programme: Programme, level: Level | None, pointer: str) -> FieldError | None:
    rule = PROGRAMME_LEVELS[programme]
    allowed = ", ".join(lv.value for lv in rule.levels)
    if level is None:
        if rule.required:
            return _rule(
                RejectionCode.LEVEL_INVALID_FOR_PROGRAMME,
                pointer,
                f"a level is required for {programme.value}; one of: {allowed}",
            )
        return None
    if level not in rule.levels:
        return _rule(
            RejectionCode.LEVEL_INVALID_FOR_PROGRAMME,
            pointer,
            f"this level is not offered for {programme.value}; use one of: {allowed}",
        )
    return None


# --------------------------------------------------------------------- submission rules


@dataclass(frozen=True)
class Provider:
    """The submitting provider as the domain sees it."""

    provider_id: str
    ukprn: str
    combined_authorities: frozenset[CombinedAuthority]


def contract_errors(submission: EnrolmentSubmission, provider: Provider) -> list[FieldError]:
    if submission.combined_authority in provider.combined_authorities:
        return []
    return [
        _rule(
            RejectionCode.NOT_CONTRACTED,
            "/combined_authority",
            "the provider is not contracted for this combined authority",
        )
    ]


# Programme years run 1 August - 31 July (the ILR academic year). A submission may start
# in the current programme year, the next one, or up to EARLIEST_START_YEARS_BACK years
# back (continuing learners carried over), and plan to end at most MAX_PLANNED_YEARS
# after it starts.
EARLIEST_START_YEARS_BACK = 5
MAX_PLANNED_YEARS = 5


def programme_year_start(day: date) -> date:
    return date(day.year if day.month >= 8 else day.year - 1, 8, 1)


def date_range_errors(start: date, planned_end: date, today: date) -> list[FieldError]:
    current = programme_year_start(today)
    earliest = current.replace(year=current.year - EARLIEST_START_YEARS_BACK)
    latest = date(current.year + 2, 7, 31)  # the end of the next programme year
    errors = []
    if not earliest <= start <= latest:
        errors.append(
            _rule(
                RejectionCode.DATE_OUT_OF_RANGE,
                "/start_date",
                f"start_date must be between {earliest.isoformat()} and {latest.isoformat()} "
                "(this programme year, the next, or a carried-over earlier one)",
            )
        )
    try:
        last_end = start.replace(year=start.year + MAX_PLANNED_YEARS)
    except ValueError:  # 29 February
        last_end = start.replace(year=start.year + MAX_PLANNED_YEARS, day=28)
    if planned_end > last_end:
        errors.append(
            _rule(
                RejectionCode.DATE_OUT_OF_RANGE,
                "/planned_end_date",
                f"planned_end_date must be within {MAX_PLANNED_YEARS} years of start_date",
            )
        )
    return errors


def rule_errors(submission: EnrolmentSubmission, today: date) -> list[FieldError]:
    """Cross-field rules of one submission (all of them, not only the first)."""
    s = submission
    errors: list[FieldError] = []
    ca_of_la = combined_authority_of(s.local_authority)
    if ca_of_la != s.combined_authority:
        errors.append(
            _rule(
                RejectionCode.LOCAL_AUTHORITY_MISMATCH,
                "/local_authority",
                "unknown local authority code"
                if ca_of_la is None
                else "the local authority is not in the stated combined authority",
            )
        )
    if s.planned_end_date < s.start_date:
        errors.append(
            _rule(
                RejectionCode.DATES_OUT_OF_ORDER,
                "/planned_end_date",
                "planned_end_date must be on or after start_date",
            )
        )
    errors.extend(date_range_errors(s.start_date, s.planned_end_date, today))
    if s.date_of_birth >= s.start_date or s.date_of_birth > today:
        errors.append(
            _rule(
                RejectionCode.DATES_OUT_OF_ORDER,
                "/date_of_birth",
                "date_of_birth must be before start_date and not in the future",
            )
        )
    else:
        age = age_on(s.date_of_birth, s.start_date)
        if not MINIMUM_AGE <= age <= MAXIMUM_AGE:
            errors.append(
                _rule(
                    RejectionCode.AGE_OUT_OF_RANGE,
                    "/date_of_birth",
                    f"the learner must be aged {MINIMUM_AGE}-{MAXIMUM_AGE} on start_date",
                )
            )
    level = level_error(s.programme, s.level, "/level")
    if level:
        errors.append(level)
    if s.fund_model is FundModel.ADULT_SKILLS_FUND and s.start_date < ADULT_SKILLS_FUND_FROM:
        errors.append(
            _rule(
                RejectionCode.FUND_MODEL_INVALID,
                "/fund_model",
                "fund_model 38 (Adult Skills Fund) is for aims starting on or after "
                f"{ADULT_SKILLS_FUND_FROM.isoformat()}; use 35 for earlier starts",
            )
        )
    if s.year_of_arrival is not None and not (
        s.date_of_birth.year <= s.year_of_arrival <= today.year
    ):
        errors.append(
            _rule(
                RejectionCode.YEAR_OF_ARRIVAL_INVALID,
                "/year_of_arrival",
                "year_of_arrival must be between the year of birth and this year",
            )
        )
    return errors


@dataclass(frozen=True)
class Checked:
    """Outcome of checking one raw submission: a valid submission, or its errors."""

    submission: EnrolmentSubmission | None
    errors: tuple[FieldError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.submission is not None and not self.errors

    @property
    def primary_code(self) -> RejectionCode | None:
        return self.errors[0].code if self.errors else None


def check_submission(raw: object, provider: Provider, today: date) -> Checked:
    """Validate one raw (JSON-decoded) submission exactly as every channel must."""
    if not isinstance(raw, Mapping):
        return Checked(
            None,
            (
                FieldError(
                    RejectionCode.SCHEMA_INVALID,
                    "",
                    "a submission must be a JSON object",
                    "model_type",
                ),
            ),
        )
    try:
        submission = EnrolmentSubmission.model_validate(raw)
    except ValidationError as exc:
        return Checked(None, tuple(schema_errors(exc)))
    return check_valid_submission(submission, provider, today)


def check_valid_submission(
    submission: EnrolmentSubmission, provider: Provider, today: date
) -> Checked:
    """The rules beyond the schema, for an already-parsed submission."""
    errors = contract_errors(submission, provider) + rule_errors(submission, today)
    return Checked(submission, tuple(errors))


# ----------------------------------------------------------------------------- lifecycle


class Status(StrEnum):
    CONTINUING = "continuing"
    BREAK = "break"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


COMPLETION_STATUS: Mapping[Status, CompletionStatus] = {
    Status.CONTINUING: CompletionStatus.CONTINUING,
    Status.BREAK: CompletionStatus.BREAK,
    Status.COMPLETED: CompletionStatus.COMPLETED,
    Status.WITHDRAWN: CompletionStatus.WITHDRAWN,
}

TERMINAL = frozenset({Status.COMPLETED, Status.WITHDRAWN})


@dataclass(frozen=True)
class Lifecycle:
    status: Status
    status_since: date
    outcome: Outcome | None = None
    level_reached: Level | None = None
    ended_on: date | None = None
    withdrawal_reason: WithdrawalReason | None = None
    expected_return_on: date | None = None

    @property
    def completion_status(self) -> CompletionStatus:
        return COMPLETION_STATUS[self.status]

    @classmethod
    def started(cls, start_date: date) -> Lifecycle:
        return cls(status=Status.CONTINUING, status_since=start_date)


_Strict = ConfigDict(frozen=True, extra="forbid")


class AttendanceProgress(BaseModel):
    model_config = _Strict
    kind: Literal["attendance"]
    period_start: date
    period_end: date
    sessions_planned: int = Field(ge=0, le=1000)
    sessions_attended: int = Field(ge=0, le=1000)
    hours_attended: float = Field(default=0.0, ge=0, le=9999)


class AssessmentProgress(BaseModel):
    model_config = _Strict
    kind: Literal["assessment"]
    assessed_on: date
    level_reached: Level | None = Field(
        default=None, description="For ESOL: the ESOL level the learner was assessed at."
    )
    passed: bool | None = None


class BreakProgress(BaseModel):
    model_config = _Strict
    kind: Literal["break"]
    started_on: date
    expected_return_on: date | None = None


class ResumeProgress(BaseModel):
    model_config = _Strict
    kind: Literal["resume"]
    resumed_on: date


class CompletionProgress(BaseModel):
    model_config = _Strict
    kind: Literal["completion"]
    completed_on: date = Field(description="ILR LearnActEndDate.")
    completion_status: CompletionStatus = Field(
        default=CompletionStatus.COMPLETED, description="ILR CompStatus; must be 2."
    )
    outcome: Outcome = Field(description="ILR Outcome (8 = not yet known).")
    level_reached: Level | None = None

    @field_validator("completion_status")
    @classmethod
    def _completed(cls, value: CompletionStatus) -> CompletionStatus:
        if value is not CompletionStatus.COMPLETED:
            raise ValueError("a completion has completion_status 2 (completed)")
        return value


class WithdrawalProgress(BaseModel):
    model_config = _Strict
    kind: Literal["withdrawal"]
    withdrawn_on: date = Field(description="ILR LearnActEndDate.")
    completion_status: CompletionStatus = Field(
        default=CompletionStatus.WITHDRAWN, description="ILR CompStatus; must be 3."
    )
    reason: WithdrawalReason = Field(description="ILR WithdrawReason.")

    @field_validator("completion_status")
    @classmethod
    def _withdrawn(cls, value: CompletionStatus) -> CompletionStatus:
        if value is not CompletionStatus.WITHDRAWN:
            raise ValueError("a withdrawal has completion_status 3 (withdrawn)")
        return value


class OutcomeProgress(BaseModel):
    model_config = _Strict
    kind: Literal["outcome"]
    recorded_on: date
    outcome: Outcome
    level_reached: Level | None = None


Progress = Annotated[
    AttendanceProgress
    | AssessmentProgress
    | BreakProgress
    | ResumeProgress
    | CompletionProgress
    | WithdrawalProgress
    | OutcomeProgress,
    Field(discriminator="kind"),
]


class IllegalTransition(Exception):
    """The progress conflicts with the enrolment's current state."""

    def __init__(self, message: str, pointer: str = "/kind") -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


class InvalidProgress(Exception):
    """The progress is wrong in itself or for this enrolment."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = tuple(errors)


def _invalid(pointer: str, message: str, type_: str = "progress_invalid") -> FieldError:
    return FieldError(RejectionCode.SCHEMA_INVALID, pointer, message, type_)


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    on: date
    status: Status
    recorded_at: datetime


@dataclass(frozen=True)
class Enrolment:
    """One enrolment: the validated submission (kept only in this service) and its state."""

    enrolment_id: str
    provider_id: str
    provider_ukprn: str
    learner: str
    submission: EnrolmentSubmission
    fingerprint: str
    age_band: AgeBand
    lifecycle: Lifecycle
    accepted_at: datetime
    version: int = 0
    applied_progress: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def ref(self) -> dict[str, Any]:
        """The :class:`EnrolmentRef` fields every event repeats."""
        s = self.submission
        return {
            "enrolment_id": self.enrolment_id,
            "learner": self.learner,
            "provider_ukprn": self.provider_ukprn,
            "combined_authority": s.combined_authority,
            "local_authority": s.local_authority,
            "programme": s.programme,
            "level": s.level,
            "consent": s.consent,
        }


def background_of(submission: EnrolmentSubmission) -> Background:
    return Background(
        ethnicity=submission.ethnicity,
        religion=submission.religion,
        country_of_birth=submission.country_of_birth,
        first_language=submission.first_language,
        year_of_arrival=submission.year_of_arrival,
    )


def accept(
    submission: EnrolmentSubmission,
    provider: Provider,
    pseudonyms: Pseudonymiser,
    now: datetime,
) -> tuple[Enrolment, list[Event]]:
    """A checked submission → the new enrolment and the events announcing it.

    ``ParticipantOptedIn`` carries ``background`` only with ``consent.matching``.
    """
    band = age_band(submission.date_of_birth, submission.start_date)
    if band is None:  # check_submission refuses these; guard the invariant anyway
        raise ValueError("accept() needs a checked submission (learner under 16)")
    enrolment = Enrolment(
        enrolment_id=pseudonyms.enrolment_id(provider.ukprn, submission),
        provider_id=provider.provider_id,
        provider_ukprn=provider.ukprn,
        learner=pseudonyms.learner(provider.ukprn, submission.learner_ref),
        submission=submission,
        fingerprint=submission_fingerprint(submission),
        age_band=band,
        lifecycle=Lifecycle.started(submission.start_date),
        accepted_at=now,
        history=(HistoryEntry("accepted", submission.start_date, Status.CONTINUING, now),),
    )
    background = background_of(submission)
    events: list[Event] = [
        EnrolmentAccepted(
            **enrolment.ref(),
            learning_aim_ref=submission.learning_aim_ref,
            start_date=submission.start_date,
            planned_end_date=submission.planned_end_date,
            planned_hours=submission.planned_hours,
            fund_model=submission.fund_model,
            age_band=band,
            sex=submission.sex,
            background=background,
            wants_conversation_partner=submission.wants_conversation_partner,
            accepted_at=now,
        )
    ]
    if submission.wants_conversation_partner:
        events.append(
            ParticipantOptedIn(
                **enrolment.ref(),
                age_band=band,
                sex=submission.sex,
                languages=(submission.first_language,) if submission.first_language else (),
                availability=submission.availability,
                interests=submission.interests,
                gender_preference=submission.partner_gender_preference,
                background=background if submission.consent.matching else None,
                opted_in_at=now,
            )
        )
    return enrolment, events


@dataclass(frozen=True)
class Transition:
    enrolment: Enrolment
    event: Event


def _ended_phrase(lc: Lifecycle) -> str:
    return f"the enrolment is {lc.status.value}"


def _check_dates(
    enrolment: Enrolment, today: date, dates: Iterable[tuple[str, date]]
) -> list[FieldError]:
    errors = []
    start = enrolment.submission.start_date
    for pointer, value in dates:
        if value < start:
            errors.append(_invalid(pointer, "must be on or after the enrolment's start_date"))
        elif value > today:
            errors.append(_invalid(pointer, "must not be in the future"))
    return errors


def _within_enrolment(lc: Lifecycle, on: date, pointer: str, what: str) -> None:
    """Attendance and assessments after an enrolment ended are refused."""
    if lc.status in TERMINAL and lc.ended_on is not None and on > lc.ended_on:
        raise IllegalTransition(
            f"{_ended_phrase(lc)}; {what} after it ended cannot be recorded", pointer
        )


def apply_progress(
    enrolment: Enrolment, progress: BaseModel, today: date, now: datetime
) -> Transition:
    """Apply one progress record to an enrolment under the ILR's lifecycle rules.

    Raises :class:`InvalidProgress` (the record is wrong in itself) or
    :class:`IllegalTransition` (the record conflicts with the current state); never
    applies anything silently.
    """
    lc = enrolment.lifecycle
    ref = enrolment.ref()
    programme = enrolment.submission.programme
    event: Event
    new_lc = lc
    match progress:
        case AttendanceProgress():
            errors = _check_dates(
                enrolment,
                today,
                [("/period_start", progress.period_start), ("/period_end", progress.period_end)],
            )
            if progress.period_end < progress.period_start:
                errors.append(
                    _invalid("/period_end", "period_end must be on or after period_start")
                )
            if progress.sessions_attended > progress.sessions_planned:
                errors.append(_invalid("/sessions_attended", "cannot exceed sessions_planned"))
            if errors:
                raise InvalidProgress(errors)
            _within_enrolment(lc, progress.period_end, "/period_end", "attendance")
            on = progress.period_end
            event = AttendanceRecorded(
                **ref,
                period_start=progress.period_start,
                period_end=progress.period_end,
                sessions_planned=progress.sessions_planned,
                sessions_attended=progress.sessions_attended,
                hours_attended=progress.hours_attended,
            )
        case AssessmentProgress():
            errors = _check_dates(enrolment, today, [("/assessed_on", progress.assessed_on)])
            level = (
                level_error(programme, progress.level_reached, "/level_reached")
                if progress.level_reached is not None
                else None
            )
            if level:
                errors.append(level)
            if errors:
                raise InvalidProgress(errors)
            _within_enrolment(lc, progress.assessed_on, "/assessed_on", "an assessment")
            on = progress.assessed_on
            event = AssessmentRecorded(
                **ref,
                assessed_on=progress.assessed_on,
                level_reached=progress.level_reached,
                passed=progress.passed,
            )
        case BreakProgress():
            errors = _check_dates(enrolment, today, [("/started_on", progress.started_on)])
            if progress.expected_return_on and progress.expected_return_on < progress.started_on:
                errors.append(_invalid("/expected_return_on", "must be on or after started_on"))
            if errors:
                raise InvalidProgress(errors)
            if lc.status is not Status.CONTINUING:
                raise IllegalTransition(
                    "the learner is already on a break"
                    if lc.status is Status.BREAK
                    else f"{_ended_phrase(lc)}; a break can only start while continuing"
                )
            if progress.started_on < lc.status_since:
                raise IllegalTransition(
                    "a break cannot start before the current status began", "/started_on"
                )
            on = progress.started_on
            new_lc = replace(
                lc,
                status=Status.BREAK,
                status_since=on,
                expected_return_on=progress.expected_return_on,
            )
            event = BreakInLearningStarted(
                **ref, break_started_on=on, expected_return_on=progress.expected_return_on
            )
        case ResumeProgress():
            errors = _check_dates(enrolment, today, [("/resumed_on", progress.resumed_on)])
            if errors:
                raise InvalidProgress(errors)
            if lc.status is not Status.BREAK:
                raise IllegalTransition(
                    f"{_ended_phrase(lc)}; only a learner on a break can resume"
                )
            if progress.resumed_on < lc.status_since:
                raise IllegalTransition("cannot resume before the break started", "/resumed_on")
            on = progress.resumed_on
            new_lc = replace(lc, status=Status.CONTINUING, status_since=on, expected_return_on=None)
            event = LearningResumed(**ref, resumed_on=on)
        case CompletionProgress():
            errors = _check_dates(enrolment, today, [("/completed_on", progress.completed_on)])
            level = (
                level_error(programme, progress.level_reached, "/level_reached")
                if progress.level_reached is not None
                else None
            )
            if level:
                errors.append(level)
            if errors:
                raise InvalidProgress(errors)
            if lc.status is Status.WITHDRAWN:
                raise IllegalTransition("a withdrawn enrolment cannot be completed")
            if lc.status is Status.COMPLETED:
                raise IllegalTransition("the enrolment is already completed")
            if lc.status is Status.BREAK:
                raise IllegalTransition(
                    "the learner is on a break; record their return (kind 'resume') first"
                )
            if progress.completed_on < lc.status_since:
                raise IllegalTransition(
                    "completion cannot be dated before the current status began",
                    "/completed_on",
                )
            on = progress.completed_on
            new_lc = replace(
                lc,
                status=Status.COMPLETED,
                status_since=on,
                ended_on=on,
                outcome=progress.outcome,
                level_reached=progress.level_reached,
            )
            event = EnrolmentCompleted(
                **ref,
                completed_on=on,
                outcome=progress.outcome,
                level_reached=progress.level_reached,
            )
        case WithdrawalProgress():
            errors = _check_dates(enrolment, today, [("/withdrawn_on", progress.withdrawn_on)])
            if errors:
                raise InvalidProgress(errors)
            if lc.status is Status.COMPLETED:
                raise IllegalTransition("a completed enrolment cannot be withdrawn")
            if lc.status is Status.WITHDRAWN:
                raise IllegalTransition("the enrolment is already withdrawn")
            if progress.withdrawn_on < lc.status_since:
                raise IllegalTransition(
                    "withdrawal cannot be dated before the current status began",
                    "/withdrawn_on",
                )
            on = progress.withdrawn_on
            new_lc = replace(
                lc,
                status=Status.WITHDRAWN,
                status_since=on,
                ended_on=on,
                withdrawal_reason=progress.reason,
                expected_return_on=None,
            )
            event = EnrolmentWithdrawn(**ref, withdrawn_on=on, reason=progress.reason)
        case OutcomeProgress():
            errors = _check_dates(enrolment, today, [("/recorded_on", progress.recorded_on)])
            level = (
                level_error(programme, progress.level_reached, "/level_reached")
                if progress.level_reached is not None
                else None
            )
            if level:
                errors.append(level)
            if errors:
                raise InvalidProgress(errors)
            if lc.status is not Status.COMPLETED:
                raise IllegalTransition(
                    f"{_ended_phrase(lc)}; an outcome can be recorded only after completion"
                )
            if lc.outcome is not None and lc.outcome is not Outcome.NOT_YET_KNOWN:
                raise IllegalTransition(
                    "the outcome is already recorded; corrections are not supported",
                    "/outcome",
                )
            if lc.ended_on is not None and progress.recorded_on < lc.ended_on:
                raise IllegalTransition(
                    "an outcome cannot be dated before completion", "/recorded_on"
                )
            on = progress.recorded_on
            new_lc = replace(
                lc,
                outcome=progress.outcome,
                level_reached=progress.level_reached or lc.level_reached,
            )
            event = OutcomeRecorded(
                **ref,
                recorded_on=on,
                outcome=progress.outcome,
                level_reached=progress.level_reached,
            )
        case _:
            raise TypeError(f"not a progress record: {type(progress).__name__}")
    kind = getattr(progress, "kind", "progress")
    updated = replace(
        enrolment,
        lifecycle=new_lc,
        applied_progress=(*enrolment.applied_progress, progress_fingerprint(progress)),
        history=(*enrolment.history, HistoryEntry(kind, on, new_lc.status, now)),
    )
    return Transition(updated, event)


def progress_fingerprint(progress: BaseModel) -> str:
    return fingerprint(progress)[:32]


def already_applied(enrolment: Enrolment, progress: BaseModel) -> bool:
    """The very same progress record was applied before (an idempotent replay)."""
    return progress_fingerprint(progress) in enrolment.applied_progress
