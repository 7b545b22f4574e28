"""The ILR lifecycle: continuing, break, completed, withdrawn; illegal moves are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.enrolment.domain import (
    Enrolment,
    IllegalTransition,
    InvalidProgress,
    Progress,
    Status,
    accept,
    already_applied,
    apply_progress,
)
from shared.contracts.enrolment import (
    BreakInLearningStarted,
    EnrolmentCompleted,
    EnrolmentSubmission,
    EnrolmentWithdrawn,
    OutcomeRecorded,
)
from shared.contracts.reference import CompletionStatus, Level, Outcome
from tests.unit.enrolment.enrolment_fakes import NOW, PROVIDER, PSEUDONYMS, TODAY, submission

PROGRESS: TypeAdapter[Any] = TypeAdapter(Progress)


def new_enrolment(**overrides: Any) -> Enrolment:
    enrolment, _ = accept(
        EnrolmentSubmission.model_validate(submission(**overrides)), PROVIDER, PSEUDONYMS, NOW
    )
    return enrolment


def apply(enrolment: Enrolment, **record: Any) -> Enrolment:
    return apply_progress(enrolment, PROGRESS.validate_python(record), TODAY, NOW).enrolment


ATTEND = {
    "kind": "attendance",
    "period_start": "2025-09-08",
    "period_end": "2025-09-30",
    "sessions_planned": 8,
    "sessions_attended": 7,
    "hours_attended": 17.5,
}
BREAK = {"kind": "break", "started_on": "2025-11-03", "expected_return_on": "2026-01-05"}
RESUME = {"kind": "resume", "resumed_on": "2026-01-05"}
COMPLETE = {"kind": "completion", "completed_on": "2026-02-20", "outcome": 8}
COMPLETE_ACHIEVED = {
    "kind": "completion",
    "completed_on": "2026-02-20",
    "outcome": 1,
    "level_reached": "entry_3",
}
WITHDRAW = {"kind": "withdrawal", "withdrawn_on": "2025-12-01", "reason": 3}
OUTCOME = {"kind": "outcome", "recorded_on": "2026-02-27", "outcome": 1, "level_reached": "entry_3"}


def test_a_new_enrolment_is_continuing() -> None:
    lc = new_enrolment().lifecycle
    assert lc.status is Status.CONTINUING
    assert lc.completion_status is CompletionStatus.CONTINUING


def test_break_resume_complete_then_outcome() -> None:
    e = new_enrolment()
    e = apply(e, **ATTEND)
    e = apply(e, **BREAK)
    assert e.lifecycle.status is Status.BREAK
    assert e.lifecycle.completion_status is CompletionStatus.BREAK
    e = apply(e, **RESUME)
    assert e.lifecycle.status is Status.CONTINUING
    e = apply(e, **COMPLETE)
    assert e.lifecycle.status is Status.COMPLETED
    assert e.lifecycle.outcome is Outcome.NOT_YET_KNOWN
    e = apply(e, **OUTCOME)
    assert e.lifecycle.outcome is Outcome.ACHIEVED
    assert e.lifecycle.level_reached is Level.ENTRY_3
    assert [h.kind for h in e.history] == [
        "accepted",
        "attendance",
        "break",
        "resume",
        "completion",
        "outcome",
    ]


def test_each_transition_announces_its_event() -> None:
    e = new_enrolment()
    t = apply_progress(e, PROGRESS.validate_python(BREAK), TODAY, NOW)
    assert isinstance(t.event, BreakInLearningStarted)
    t = apply_progress(e, PROGRESS.validate_python(COMPLETE_ACHIEVED), TODAY, NOW)
    assert isinstance(t.event, EnrolmentCompleted)
    assert t.event.completion_status is CompletionStatus.COMPLETED
    assert t.event.level_reached is Level.ENTRY_3
    assert t.event.learner == e.learner and t.event.enrolment_id == e.enrolment_id
    t = apply_progress(e, PROGRESS.validate_python(WITHDRAW), TODAY, NOW)
    assert isinstance(t.event, EnrolmentWithdrawn)
    assert t.event.reason == 3
    completed = apply(e, **COMPLETE)
    t = apply_progress(completed, PROGRESS.validate_python(OUTCOME), TODAY, NOW)
    assert isinstance(t.event, OutcomeRecorded)


@pytest.mark.parametrize(
    ("history", "record", "reason"),
    [
        ([WITHDRAW], COMPLETE, "a withdrawn enrolment cannot be completed"),
        ([WITHDRAW], WITHDRAW | {"reason": 7}, "already withdrawn"),
        ([COMPLETE], WITHDRAW | {"withdrawn_on": "2026-02-25"}, "cannot be withdrawn"),
        ([COMPLETE], COMPLETE_ACHIEVED, "already completed"),
        ([], OUTCOME, "only after completion"),
        ([WITHDRAW], OUTCOME, "only after completion"),
        ([COMPLETE_ACHIEVED], OUTCOME | {"outcome": 2}, "already recorded"),
        ([BREAK], COMPLETE, "on a break"),
        ([BREAK], BREAK | {"started_on": "2025-11-10"}, "already on a break"),
        ([], RESUME, "only a learner on a break can resume"),
        ([WITHDRAW], BREAK | {"started_on": "2025-12-02"}, "withdrawn"),
        ([WITHDRAW], ATTEND | {"period_end": "2025-12-05"}, "after it ended"),
        ([BREAK], RESUME | {"resumed_on": "2025-11-01"}, "before the break started"),
    ],
)
def test_illegal_transitions_are_refused_with_a_reason(
    history: list[dict[str, Any]], record: dict[str, Any], reason: str
) -> None:
    e = new_enrolment()
    for step in history:
        e = apply(e, **step)
    before = e
    with pytest.raises(IllegalTransition) as refused:
        apply(e, **record)
    assert reason in refused.value.message
    assert e == before  # nothing applied


def test_attendance_before_withdrawal_date_is_still_accepted() -> None:
    e = apply(new_enrolment(), **WITHDRAW)
    e = apply(e, **ATTEND)
    assert e.lifecycle.status is Status.WITHDRAWN


@pytest.mark.parametrize(
    ("record", "pointer"),
    [
        (ATTEND | {"period_start": "2025-09-20", "period_end": "2025-09-10"}, "/period_end"),
        (ATTEND | {"sessions_attended": 9}, "/sessions_attended"),
        (COMPLETE | {"completed_on": "2025-01-01"}, "/completed_on"),
        (COMPLETE | {"completed_on": "2099-01-01"}, "/completed_on"),
        (COMPLETE | {"level_reached": "level_3"}, "/level_reached"),
        (
            {"kind": "assessment", "assessed_on": "2025-10-01", "level_reached": "level_3"},
            "/level_reached",
        ),
        (BREAK | {"expected_return_on": "2025-10-01"}, "/expected_return_on"),
    ],
)
def test_invalid_progress_is_refused_with_a_field_pointer(
    record: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(InvalidProgress) as refused:
        apply(new_enrolment(), **record)
    assert [e.pointer for e in refused.value.errors] == [pointer]


def test_ilr_completion_status_must_match_the_kind() -> None:
    with pytest.raises(ValidationError):
        PROGRESS.validate_python(COMPLETE | {"completion_status": 3})
    with pytest.raises(ValidationError):
        PROGRESS.validate_python(WITHDRAW | {"completion_status": 2})
    assert PROGRESS.validate_python(WITHDRAW | {"completion_status": 3}).reason == 3


def test_unknown_withdrawal_reason_and_outcome_codes_are_refused() -> None:
    with pytest.raises(ValidationError):
        PROGRESS.validate_python(WITHDRAW | {"reason": 5})
    with pytest.raises(ValidationError):
        PROGRESS.validate_python(COMPLETE | {"outcome": 4})


def test_replaying_the_same_record_is_recognised() -> None:
    e = new_enrolment()
    record = PROGRESS.validate_python(WITHDRAW)
    after = apply_progress(e, record, TODAY, NOW).enrolment
    assert already_applied(after, PROGRESS.validate_python(WITHDRAW))
    assert not already_applied(after, PROGRESS.validate_python(WITHDRAW | {"reason": 7}))
    assert not already_applied(e, record)
