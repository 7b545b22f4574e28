"""HTTP request and response models of the enrolment API (the submission model itself is
part of the contract: :class:`shared.contracts.enrolment.EnrolmentSubmission`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.enrolment.domain import Enrolment, FieldError, Status
from services.enrolment.use_cases.intake import ItemResult, ItemStatus
from shared.contracts.enrolment import EnrolmentSubmission, RejectionCode
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
    pointer: str = Field(description="JSON pointer into the request body.")
    field: str
    message: str
    type: str
    code: RejectionCode

    @classmethod
    def of(cls, error: FieldError) -> ItemError:
        return cls(
            pointer=error.pointer,
            field=error.field,
            message=error.message,
            type=error.type,
            code=error.code,
        )


def problem_errors(errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    """Field errors as the ``errors`` of a problem+json document."""
    return [ItemError.of(e).model_dump(mode="json") for e in errors]


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
            errors=[ItemError.of(e.at(prefix)) for e in r.errors],
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
    kind: str
    on: date
    status: Status
    recorded_at: datetime


class EnrolmentView(BaseModel):
    """The provider's own enrolment: what it submitted and where the enrolment stands."""

    enrolment_id: str
    learner: str = Field(description="The learner pseudonym used on every event.")
    provider_ukprn: str
    status: Status
    completion_status: CompletionStatus = Field(description="ILR CompStatus.")
    status_since: date
    outcome: Outcome | None = None
    level_reached: Level | None = None
    ended_on: date | None = None
    withdrawal_reason: WithdrawalReason | None = None
    expected_return_on: date | None = None
    age_band: AgeBand
    accepted_at: datetime
    submission: EnrolmentSubmission
    history: list[HistoryItem]

    @classmethod
    def of(cls, e: Enrolment) -> EnrolmentView:
        lc = e.lifecycle
        return cls(
            enrolment_id=e.enrolment_id,
            learner=e.learner,
            provider_ukprn=e.provider_ukprn,
            status=lc.status,
            completion_status=lc.completion_status,
            status_since=lc.status_since,
            outcome=lc.outcome,
            level_reached=lc.level_reached,
            ended_on=lc.ended_on,
            withdrawal_reason=lc.withdrawal_reason,
            expected_return_on=lc.expected_return_on,
            age_band=e.age_band,
            accepted_at=e.accepted_at,
            submission=e.submission,
            history=[
                HistoryItem(kind=h.kind, on=h.on, status=h.status, recorded_at=h.recorded_at)
                for h in e.history
            ],
        )


class ProgressReceipt(BaseModel):
    enrolment_id: str
    applied: bool = Field(description="False when this exact record was applied before.")
    status: Status
    completion_status: CompletionStatus
    outcome: Outcome | None = None
    href: str
