"""What ILR mapping produces (a plan per learner: its enrolment targets and issues),
what it needs (:class:`MappingContext`), and the helpers its checks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from services.enrolment.domain import (
    BreakProgress,
    CompletionProgress,
    Provider,
    ResumeProgress,
    WithdrawalProgress,
)
from services.enrolment.ilr.aims import AimCatalogue
from shared.contracts.enrolment import EnrolmentSubmission
from shared.contracts.ilr import (
    IlrYear,
)
from shared.contracts.reference import (
    FundModel,
    Outcome,
)

Severity = Literal["error", "warning"]

# Fund models this platform takes (the contract's FundModel) and those of them whose
# aims must name their source of funding (LearnDelFAMType_01: funded aims need SOF).
IN_SCOPE_FUND_MODELS = frozenset(int(f) for f in FundModel)
FUNDED_MODELS = IN_SCOPE_FUND_MODELS - {int(FundModel.NON_FUNDED)}
# Planned hours when the file gives neither PHours nor PlanLearnHours: 3 a week.
DEFAULT_HOURS_PER_WEEK = 3


@dataclass(frozen=True)
class Issue:
    """Something wrong with a learner or an aim (``severity`` error: not imported)."""

    rule: str
    severity: Severity
    message: str
    field: str = ""
    learn_ref: str | None = None
    aim_seq: int | None = None
    learner_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "learner_index": self.learner_index,
            "learn_ref_number": self.learn_ref,
            "aim_seq_number": self.aim_seq,
            "rule": self.rule,
            "severity": self.severity,
            "field": self.field,
            "message": self.message,
        }


Step = BreakProgress | ResumeProgress | CompletionProgress | WithdrawalProgress


@dataclass(frozen=True)
class AimTarget:
    """One enrolment as the file states it: its natural key, the submission (None when
    only a restart record is in the file: the original was accepted from an earlier
    file), and the lifecycle steps from acceptance to now."""

    learn_ref: str
    aim_seqs: tuple[int, ...]
    learning_aim_ref: str
    start_date: date
    submission: EnrolmentSubmission | None
    steps: tuple[Step, ...]
    outcome: Outcome | None = None
    outcome_on: date | None = None


@dataclass(frozen=True)
class LearnerPlan:
    index: int
    learn_ref: str | None
    targets: tuple[AimTarget, ...] = ()
    issues: tuple[Issue, ...] = ()
    out_of_scope: int = 0
    rejected_aims: int = 0

    @property
    def has_errors(self) -> bool:
        return any(i.severity == "error" for i in self.issues)


@dataclass(frozen=True)
class MappingContext:
    year: IlrYear
    provider: Provider
    today: date
    catalogue: AimCatalogue = field(default_factory=AimCatalogue)


# ------------------------------------------------------------------------------ fields


def ilr_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def ilr_int(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return int(value)


class IssueCollector:
    def __init__(self, index: int, learn_ref: str | None) -> None:
        self.index = index
        self.learn_ref = learn_ref
        self.issues: list[Issue] = []

    def add(
        self,
        rule: str,
        message: str,
        field_name: str = "",
        aim_seq: int | None = None,
        severity: Severity = "error",
    ) -> None:
        self.issues.append(
            Issue(rule, severity, message, field_name, self.learn_ref, aim_seq, self.index)
        )
