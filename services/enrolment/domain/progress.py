"""Progress records (attendance, assessments, breaks, returns, completion, withdrawal,
outcomes) and applying one to an enrolment under the ILR's lifecycle rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.enrolment.domain.enrolment import TERMINAL, Enrolment, HistoryEntry, Lifecycle, Status
from services.enrolment.domain.errors import FieldError
from services.enrolment.domain.pseudonyms import fingerprint
from services.enrolment.domain.submission import level_error
from shared.cloudevents import Event
from shared.contracts.enrolment import (
    AssessmentRecorded,
    AttendanceRecorded,
    BreakInLearningStarted,
    EnrolmentCompleted,
    EnrolmentWithdrawn,
    LearningResumed,
    OutcomeRecorded,
    RejectionCode,
)
from shared.contracts.reference import (
    CompletionStatus,
    Level,
    Outcome,
    WithdrawalReason,
)

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


@dataclass(frozen=True)
class _Step:
    """What one progress record does: the day it happened, the lifecycle after it and
    the event announcing it."""

    on: date
    lifecycle: Lifecycle
    event: Event


def _refuse_invalid(errors: list[FieldError]) -> None:
    if errors:
        raise InvalidProgress(errors)


def _level_errors(enrolment: Enrolment, level: Level | None) -> list[FieldError]:
    """The reached level must be one the programme offers (when one is given)."""
    if level is None:
        return []
    error = level_error(enrolment.submission.programme, level, "/level_reached")
    return [error] if error else []


def _attendance(enrolment: Enrolment, progress: AttendanceProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    errors = _check_dates(
        enrolment,
        today,
        [("/period_start", progress.period_start), ("/period_end", progress.period_end)],
    )
    if progress.period_end < progress.period_start:
        errors.append(_invalid("/period_end", "period_end must be on or after period_start"))
    if progress.sessions_attended > progress.sessions_planned:
        errors.append(_invalid("/sessions_attended", "cannot exceed sessions_planned"))
    _refuse_invalid(errors)
    _within_enrolment(lc, progress.period_end, "/period_end", "attendance")
    event = AttendanceRecorded(
        **enrolment.ref(),
        period_start=progress.period_start,
        period_end=progress.period_end,
        sessions_planned=progress.sessions_planned,
        sessions_attended=progress.sessions_attended,
        hours_attended=progress.hours_attended,
    )
    return _Step(progress.period_end, lc, event)


def _assessment(enrolment: Enrolment, progress: AssessmentProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    errors = _check_dates(enrolment, today, [("/assessed_on", progress.assessed_on)])
    _refuse_invalid(errors + _level_errors(enrolment, progress.level_reached))
    _within_enrolment(lc, progress.assessed_on, "/assessed_on", "an assessment")
    event = AssessmentRecorded(
        **enrolment.ref(),
        assessed_on=progress.assessed_on,
        level_reached=progress.level_reached,
        passed=progress.passed,
    )
    return _Step(progress.assessed_on, lc, event)


def _break(enrolment: Enrolment, progress: BreakProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    errors = _check_dates(enrolment, today, [("/started_on", progress.started_on)])
    if progress.expected_return_on and progress.expected_return_on < progress.started_on:
        errors.append(_invalid("/expected_return_on", "must be on or after started_on"))
    _refuse_invalid(errors)
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
    after = replace(
        lc, status=Status.BREAK, status_since=on, expected_return_on=progress.expected_return_on
    )
    event = BreakInLearningStarted(
        **enrolment.ref(), break_started_on=on, expected_return_on=progress.expected_return_on
    )
    return _Step(on, after, event)


def _resume(enrolment: Enrolment, progress: ResumeProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    _refuse_invalid(_check_dates(enrolment, today, [("/resumed_on", progress.resumed_on)]))
    if lc.status is not Status.BREAK:
        raise IllegalTransition(f"{_ended_phrase(lc)}; only a learner on a break can resume")
    if progress.resumed_on < lc.status_since:
        raise IllegalTransition("cannot resume before the break started", "/resumed_on")
    on = progress.resumed_on
    after = replace(lc, status=Status.CONTINUING, status_since=on, expected_return_on=None)
    return _Step(on, after, LearningResumed(**enrolment.ref(), resumed_on=on))


def _completion(enrolment: Enrolment, progress: CompletionProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    errors = _check_dates(enrolment, today, [("/completed_on", progress.completed_on)])
    _refuse_invalid(errors + _level_errors(enrolment, progress.level_reached))
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
            "completion cannot be dated before the current status began", "/completed_on"
        )
    on = progress.completed_on
    after = replace(
        lc,
        status=Status.COMPLETED,
        status_since=on,
        ended_on=on,
        outcome=progress.outcome,
        level_reached=progress.level_reached,
    )
    event = EnrolmentCompleted(
        **enrolment.ref(),
        completed_on=on,
        outcome=progress.outcome,
        level_reached=progress.level_reached,
    )
    return _Step(on, after, event)


def _withdrawal(enrolment: Enrolment, progress: WithdrawalProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    _refuse_invalid(_check_dates(enrolment, today, [("/withdrawn_on", progress.withdrawn_on)]))
    if lc.status is Status.COMPLETED:
        raise IllegalTransition("a completed enrolment cannot be withdrawn")
    if lc.status is Status.WITHDRAWN:
        raise IllegalTransition("the enrolment is already withdrawn")
    if progress.withdrawn_on < lc.status_since:
        raise IllegalTransition(
            "withdrawal cannot be dated before the current status began", "/withdrawn_on"
        )
    on = progress.withdrawn_on
    after = replace(
        lc,
        status=Status.WITHDRAWN,
        status_since=on,
        ended_on=on,
        withdrawal_reason=progress.reason,
        expected_return_on=None,
    )
    event = EnrolmentWithdrawn(**enrolment.ref(), withdrawn_on=on, reason=progress.reason)
    return _Step(on, after, event)


def _outcome(enrolment: Enrolment, progress: OutcomeProgress, today: date) -> _Step:
    lc = enrolment.lifecycle
    errors = _check_dates(enrolment, today, [("/recorded_on", progress.recorded_on)])
    _refuse_invalid(errors + _level_errors(enrolment, progress.level_reached))
    if lc.status is not Status.COMPLETED:
        raise IllegalTransition(
            f"{_ended_phrase(lc)}; an outcome can be recorded only after completion"
        )
    if lc.outcome is not None and lc.outcome is not Outcome.NOT_YET_KNOWN:
        raise IllegalTransition(
            "the outcome is already recorded; corrections are not supported", "/outcome"
        )
    if lc.ended_on is not None and progress.recorded_on < lc.ended_on:
        raise IllegalTransition("an outcome cannot be dated before completion", "/recorded_on")
    after = replace(
        lc, outcome=progress.outcome, level_reached=progress.level_reached or lc.level_reached
    )
    event = OutcomeRecorded(
        **enrolment.ref(),
        recorded_on=progress.recorded_on,
        outcome=progress.outcome,
        level_reached=progress.level_reached,
    )
    return _Step(progress.recorded_on, after, event)


def _step_of(enrolment: Enrolment, progress: BaseModel, today: date) -> _Step:
    match progress:
        case AttendanceProgress():
            return _attendance(enrolment, progress, today)
        case AssessmentProgress():
            return _assessment(enrolment, progress, today)
        case BreakProgress():
            return _break(enrolment, progress, today)
        case ResumeProgress():
            return _resume(enrolment, progress, today)
        case CompletionProgress():
            return _completion(enrolment, progress, today)
        case WithdrawalProgress():
            return _withdrawal(enrolment, progress, today)
        case OutcomeProgress():
            return _outcome(enrolment, progress, today)
        case _:
            raise TypeError(f"not a progress record: {type(progress).__name__}")


def apply_progress(
    enrolment: Enrolment, progress: BaseModel, today: date, now: datetime
) -> Transition:
    """Apply one progress record to an enrolment under the ILR's lifecycle rules.

    Each kind checks the record itself first (:class:`InvalidProgress`), then whether the
    current state allows it (:class:`IllegalTransition`); nothing is applied silently.
    """
    step = _step_of(enrolment, progress, today)
    kind = getattr(progress, "kind", "progress")
    updated = replace(
        enrolment,
        lifecycle=step.lifecycle,
        applied_progress=(*enrolment.applied_progress, progress_fingerprint(progress)),
        history=(*enrolment.history, HistoryEntry(kind, step.on, step.lifecycle.status, now)),
    )
    return Transition(updated, step.event)


def progress_fingerprint(progress: BaseModel) -> str:
    return fingerprint(progress)[:32]


def already_applied(enrolment: Enrolment, progress: BaseModel) -> bool:
    """The very same progress record was applied before (an idempotent replay)."""
    return progress_fingerprint(progress) in enrolment.applied_progress
