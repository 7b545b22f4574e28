"""Enrolment domain: submission rules, pseudonyms, the ILR lifecycle. Pure: no I/O.

Split by concern: :mod:`.errors` (field errors), :mod:`.pseudonyms`, :mod:`.submission`
(the rules every intake channel applies), :mod:`.enrolment` (the enrolment, its
lifecycle, accepting a submission) and :mod:`.progress` (progress records and the
lifecycle transitions they make). Everything is re-exported here.
"""

from services.enrolment.domain.enrolment import (
    COMPLETION_STATUS,
    TERMINAL,
    Enrolment,
    HistoryEntry,
    Lifecycle,
    Status,
    accept,
    background_of,
)
from services.enrolment.domain.errors import (
    FieldError,
    schema_errors,
)
from services.enrolment.domain.progress import (
    AssessmentProgress,
    AttendanceProgress,
    BreakProgress,
    CompletionProgress,
    IllegalTransition,
    InvalidProgress,
    OutcomeProgress,
    Progress,
    ResumeProgress,
    Transition,
    WithdrawalProgress,
    already_applied,
    apply_progress,
    progress_fingerprint,
)
from services.enrolment.domain.pseudonyms import (
    Pseudonymiser,
    fingerprint,
    submission_fingerprint,
)
from services.enrolment.domain.submission import (
    EARLIEST_START_YEARS_BACK,
    MAX_PLANNED_YEARS,
    MAXIMUM_AGE,
    MINIMUM_AGE,
    PROGRAMME_LEVELS,
    Checked,
    LevelRule,
    Provider,
    age_band,
    age_on,
    check_submission,
    check_valid_submission,
    contract_errors,
    date_range_errors,
    level_error,
    programme_year_start,
    rule_errors,
)

__all__ = [
    "COMPLETION_STATUS",
    "EARLIEST_START_YEARS_BACK",
    "MAXIMUM_AGE",
    "MAX_PLANNED_YEARS",
    "MINIMUM_AGE",
    "PROGRAMME_LEVELS",
    "TERMINAL",
    "AssessmentProgress",
    "AttendanceProgress",
    "BreakProgress",
    "Checked",
    "CompletionProgress",
    "Enrolment",
    "FieldError",
    "HistoryEntry",
    "IllegalTransition",
    "InvalidProgress",
    "LevelRule",
    "Lifecycle",
    "OutcomeProgress",
    "Progress",
    "Provider",
    "Pseudonymiser",
    "ResumeProgress",
    "Status",
    "Transition",
    "WithdrawalProgress",
    "accept",
    "age_band",
    "age_on",
    "already_applied",
    "apply_progress",
    "background_of",
    "check_submission",
    "check_valid_submission",
    "contract_errors",
    "date_range_errors",
    "fingerprint",
    "level_error",
    "programme_year_start",
    "progress_fingerprint",
    "rule_errors",
    "schema_errors",
    "submission_fingerprint",
]
