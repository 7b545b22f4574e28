"""HTTP request and response models of the enrolment API (the submission model itself is
part of the contract: :class:`shared.contracts.enrolment.EnrolmentSubmission`), and the
report of an ILR upload."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AliasPath, BaseModel, ConfigDict, Field

from services.enrolment.domain import FieldError, Status
from services.enrolment.use_cases.intake import ItemResult, ItemStatus
from shared.contracts.enrolment import Consent, EnrolmentSubmission, RejectionCode
from shared.contracts.reference import (
    AgeBand,
    CompletionStatus,
    Level,
    Outcome,
    WithdrawalReason,
)


def enrolment_path(enrolment_id: str) -> str:
    return f"/v1/enrolments/{enrolment_id}"


class ItemError(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # from a domain FieldError

    pointer: str = Field(description="JSON pointer into the request body.")
    field: str
    message: str
    type: str
    code: RejectionCode


def problem_errors(errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    """Field errors as the ``errors`` of a problem+json document."""
    return [ItemError.model_validate(e).model_dump(mode="json") for e in errors]


# HTTP statuses belong to this edge: intake reports what happened, not how to answer.
_ITEM_STATUS = {ItemStatus.CREATED: 201, ItemStatus.DUPLICATE: 200, ItemStatus.CONFLICT: 409}


def status_code_of(result: ItemResult) -> int:
    """The status of one submission as a single POST (and in a batch's results): a refusal
    is 403 when the provider is not contracted for the area, 422 otherwise."""
    if result.status is ItemStatus.REJECTED:
        not_contracted = any(e.code is RejectionCode.NOT_CONTRACTED for e in result.errors)
        return 403 if not_contracted else 422
    return _ITEM_STATUS[result.status]


class EnrolmentReceipt(BaseModel):
    enrolment_id: str
    result: ItemStatus = Field(description="'created' (201) or 'duplicate' (200).")
    status: Status = Field(description="Lifecycle status of the enrolment.")
    submission_ref: str | None = None
    href: str


class BatchRequest(BaseModel):
    """Up to ``max_batch_items`` submissions; each is accepted or refused on its own."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(
        min_length=1,
        json_schema_extra={"items": {"$ref": "#/components/schemas/EnrolmentSubmission"}},
    )


class BatchItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request's items.")
    result: ItemStatus
    http_status: int = Field(description="The status this item would get as a single POST.")
    enrolment_id: str | None = None
    submission_ref: str | None = None
    reason: RejectionCode | None = Field(default=None, description="Primary reason code.")
    errors: list[ItemError] = Field(
        default_factory=list, description="Pointers are into the whole request (/items/3/...)."
    )
    href: str | None = None

    @classmethod
    def of(cls, r: ItemResult) -> BatchItemResult:
        prefix = f"/items/{r.index}"
        return cls(
            index=r.index,
            result=r.status,
            http_status=status_code_of(r),
            enrolment_id=r.enrolment_id,
            submission_ref=r.submission_ref,
            reason=r.reason,
            errors=[ItemError.model_validate(e.at(prefix)) for e in r.errors],
            href=enrolment_path(r.enrolment_id)
            if r.enrolment_id and r.status is not ItemStatus.CONFLICT
            else None,
        )


class BatchSummary(BaseModel):
    received: int
    created: int
    duplicate: int
    conflict: int
    rejected: int


class BatchResponse(BaseModel):
    summary: BatchSummary
    results: list[BatchItemResult]

    @classmethod
    def of(cls, results: list[ItemResult]) -> BatchResponse:
        def count(status: ItemStatus) -> int:
            return sum(1 for r in results if r.status is status)

        return cls(
            summary=BatchSummary(
                received=len(results),
                created=count(ItemStatus.CREATED),
                duplicate=count(ItemStatus.DUPLICATE),
                conflict=count(ItemStatus.CONFLICT),
                rejected=count(ItemStatus.REJECTED),
            ),
            results=[BatchItemResult.of(r) for r in results],
        )


class HistoryItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    on: date
    status: Status
    recorded_at: datetime


def _lifecycle(name: str) -> Any:
    """A field read from the enrolment's lifecycle (``EnrolmentView`` is flat)."""
    return AliasPath("lifecycle", name)


class EnrolmentView(BaseModel):
    """The provider's own enrolment: what it submitted and where the enrolment stands."""

    # EnrolmentView.model_validate(enrolment); lifecycle fields are read through aliases.
    model_config = ConfigDict(from_attributes=True)

    enrolment_id: str
    learner: str = Field(description="The learner pseudonym used on every event.")
    provider_ukprn: str
    status: Status = Field(validation_alias=_lifecycle("status"))
    completion_status: CompletionStatus = Field(
        description="ILR CompStatus.", validation_alias=_lifecycle("completion_status")
    )
    status_since: date = Field(validation_alias=_lifecycle("status_since"))
    outcome: Outcome | None = Field(default=None, validation_alias=_lifecycle("outcome"))
    level_reached: Level | None = Field(default=None, validation_alias=_lifecycle("level_reached"))
    ended_on: date | None = Field(default=None, validation_alias=_lifecycle("ended_on"))
    withdrawal_reason: WithdrawalReason | None = Field(
        default=None, validation_alias=_lifecycle("withdrawal_reason")
    )
    expected_return_on: date | None = Field(
        default=None, validation_alias=_lifecycle("expected_return_on")
    )
    age_band: AgeBand
    accepted_at: datetime
    submission: EnrolmentSubmission
    history: list[HistoryItem]


class ProgressReceipt(BaseModel):
    enrolment_id: str
    applied: bool = Field(description="False when this exact record was applied before.")
    status: Status
    completion_status: CompletionStatus
    outcome: Outcome | None = None
    href: str


class ConsentIn(BaseModel):
    """The learner's consent as it stands now (both flags, explicitly)."""

    model_config = ConfigDict(extra="forbid")

    matching: bool = Field(
        description="Explicit consent to be matched on background (special category) fields."
    )
    research: bool = Field(description="Consent to appear in record-level research exports.")


class ConsentReceipt(BaseModel):
    enrolment_id: str
    changed: bool = Field(description="False when the consent was already exactly this.")
    consent: Consent
    href: str


class ErasureReceipt(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # from an ErasureResult

    learner: str
    erased_at: datetime
    enrolment_ids: list[str]
    already_erased: bool


# ------------------------------------------------------------------ ILR uploads


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
