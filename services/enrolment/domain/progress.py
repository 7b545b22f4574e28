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
