"""An ILR upload's report: its status, what processing has counted so far, and the
upload document in each state (``ilr_uploads``; served as :class:`UploadReport`).

Counts, rule names and LearnRefNumbers only: never a name, date of birth or postcode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.enrolment.domain import Provider
from services.enrolment.ilr.diff import AimResult, AimStatus
from services.enrolment.ilr.mapping import Issue, LearnerPlan
from services.enrolment.ilr.parser import IlrHeader


class UploadStatus:
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


DONE = frozenset({UploadStatus.COMPLETED, UploadStatus.FAILED, UploadStatus.INTERRUPTED})


@dataclass
class UploadProgress:
    """What processing has counted so far (stored as the upload's report)."""

    learners_total: int
    learners_processed: int = 0
    learners_imported: int = 0
    learners_with_errors: int = 0
    learners_out_of_scope: int = 0
    aims: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    issues: list[dict[str, Any]] = field(default_factory=list)
    issues_total: int = 0
    issues_by_rule: Counter[str] = field(default_factory=Counter)
    issue_severities: Counter[str] = field(default_factory=Counter)

    def count_learner(self, plan: LearnerPlan, results: Sequence[AimResult]) -> None:
        """One learner taken from the file, with what became of its aims."""
        for result in results:
            self.aims[result.status.value] += 1
            for event in result.events:
                self.events[type(event).__name__] += 1
        self.aims["rejected"] += plan.rejected_aims
        self.aims["out_of_scope"] += plan.out_of_scope
        errors = plan.has_errors or any(r.status is AimStatus.REJECTED for r in results)
        if errors:
            self.learners_with_errors += 1
        if any(r.status is not AimStatus.REJECTED for r in results):
            self.learners_imported += 1
        elif not errors:
            self.learners_out_of_scope += 1

    def count_issues(self, issues: Sequence[Issue], max_reported: int) -> None:
        for issue in issues:
            self.issues_total += 1
            self.issues_by_rule[issue.rule] += 1
            self.issue_severities[issue.severity] += 1
            if len(self.issues) < max_reported:
                self.issues.append(issue.as_dict())

    def summary(self) -> dict[str, Any]:
        return {
            "learners": {
                "total": self.learners_total,
                "processed": self.learners_processed,
                "imported": self.learners_imported,
                "with_errors": self.learners_with_errors,
                "out_of_scope": self.learners_out_of_scope,
            },
            "aims": {
                k: self.aims.get(k, 0)
                for k in ("created", "updated", "unchanged", "rejected", "out_of_scope")
            },
            "events": dict(sorted(self.events.items())),
            "issues": {
                "total": self.issues_total,
                "errors": self.issue_severities.get("error", 0),
                "warnings": self.issue_severities.get("warning", 0),
                "by_rule": dict(sorted(self.issues_by_rule.items())),
            },
        }


def upload_document(
    upload_id: str,
    provider: Provider,
    header: IlrHeader,
    size: int,
    progress: UploadProgress,
    now: datetime,
) -> dict[str, Any]:
    """A new upload, processing, with an empty report."""
    return {
        "_id": upload_id,
        "provider_id": provider.provider_id,
        "ukprn": provider.ukprn,
        "year": header.year.code,
        "serial_no": header.serial_no,
        "file_datetime": header.file_datetime,
        "file_bytes": size,
        "status": UploadStatus.PROCESSING,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
        "summary": progress.summary(),
        "issues": [],
        "issues_truncated": False,
        "missing_learners": {"count": 0, "learn_ref_numbers": [], "truncated": False},
        "error": None,
    }


def interrupted(progress: UploadProgress, now: datetime) -> dict[str, Any]:
    return {
        "status": UploadStatus.INTERRUPTED,
        "summary": progress.summary(),
        "error": "the service stopped while processing; upload the file "
        "again: what was applied already is not applied twice",
        "finished_at": now,
    }


def failed(progress: UploadProgress, exc: Exception, now: datetime) -> dict[str, Any]:
    return {
        "status": UploadStatus.FAILED,
        "summary": progress.summary(),
        "issues": progress.issues,
        "error": f"processing failed ({type(exc).__name__}); what was applied "
        "before the failure stays applied; upload the file again to finish",
        "finished_at": now,
    }
