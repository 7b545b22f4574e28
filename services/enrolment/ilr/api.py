"""HTTP response models of ILR file intake (the submission report)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


def upload_path(upload_id: str) -> str:
    return f"/v1/ilr/submissions/{upload_id}"


class LearnerCounts(BaseModel):
    total: int = Field(description="Learners in the file.")
    processed: int = Field(description="Learners processed so far.")
    imported: int = Field(description="Learners with at least one aim taken (new or known).")
    with_errors: int = Field(description="Learners with at least one error (aims refused).")
    out_of_scope: int = Field(
        description="Learners with no Common Ground aim (e.g. only apprenticeships)."
    )


class AimCounts(BaseModel):
    created: int = Field(description="New enrolments (EnrolmentAccepted).")
    updated: int = Field(description="Known enrolments whose lifecycle moved on.")
    unchanged: int = Field(description="Known enrolments the file leaves as they were.")
    rejected: int = Field(description="Aims refused (see issues).")
    out_of_scope: int = Field(
        description="Aims that are not Common Ground programmes, or funded by another body."
    )


class IssueCounts(BaseModel):
    total: int
    errors: int
    warnings: int
    by_rule: dict[str, int]


class Summary(BaseModel):
    learners: LearnerCounts
    aims: AimCounts
    events: dict[str, int] = Field(description="Events emitted, by type.")
    issues: IssueCounts


class ReportedIssue(BaseModel):
    learner_index: int | None = Field(description="Position of the Learner in the file, from 0.")
    learn_ref_number: str | None
    aim_seq_number: int | None
    rule: str = Field(
        description="The national validation rule's name where one exists (e.g. "
        "WithdrawReason_04), else ours (CG_...). See docs/ilr.md."
    )
    severity: Literal["error", "warning"] = Field(
        description="error: the aim (or learner) was not imported; warning: imported, note it."
    )
    field: str
    message: str


class MissingLearners(BaseModel):
    count: int = Field(
        description="Learners in an earlier upload of this provider and year who are not in "
        "this file. They are reported, never withdrawn."
    )
    learn_ref_numbers: list[str]
    truncated: bool


class Progress(BaseModel):
    learners_total: int
    learners_processed: int
    percent: float


class UploadReport(BaseModel):
    upload_id: str
    status: Literal["processing", "completed", "failed", "interrupted"]
    year: str = Field(description="ILR collection year, e.g. 2627.")
    serial_no: str | None
    file_bytes: int
    created_at: datetime
    finished_at: datetime | None
    progress: Progress
    summary: Summary
    issues: list[ReportedIssue] = Field(
        description="Issues in file order (at most ENROLMENT_ILR_MAX_REPORTED_ISSUES); filled "
        "in when processing ends."
    )
    issues_truncated: bool
    missing_learners: MissingLearners
    error: str | None = None
    href: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> UploadReport:
        learners = doc["summary"]["learners"]
        total, processed = learners["total"], learners["processed"]
        return cls(
            upload_id=doc["_id"],
            status=doc["status"],
            year=doc["year"],
            serial_no=doc.get("serial_no"),
            file_bytes=doc["file_bytes"],
            created_at=doc["created_at"],
            finished_at=doc.get("finished_at"),
            progress=Progress(
                learners_total=total,
                learners_processed=processed,
                percent=round(100.0 * processed / total, 1) if total else 100.0,
            ),
            summary=Summary.model_validate(doc["summary"]),
            issues=[ReportedIssue.model_validate(i) for i in doc.get("issues", [])],
            issues_truncated=bool(doc.get("issues_truncated")),
            missing_learners=MissingLearners.model_validate(doc["missing_learners"]),
            error=doc.get("error"),
            href=upload_path(doc["_id"]),
        )
