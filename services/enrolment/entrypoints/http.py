"""Enrolment's HTTP routes: translate a request into a use case and its outcome into a
response (status codes and problem+json live here and only here)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.enrolment.domain import (
    AssessmentProgress,
    AttendanceProgress,
    BreakProgress,
    CompletionProgress,
    IllegalTransition,
    InvalidProgress,
    OutcomeProgress,
    Progress,
    ResumeProgress,
    Status,
    WithdrawalProgress,
)
from services.enrolment.entrypoints.dependencies import (
    Context,
    CurrentProvider,
    Intake,
    erasure_caller,
    intake_open,
    privacy_of,
    size_limit,
)
from services.enrolment.ilr.parser import FileProblem, IlrFileError
from services.enrolment.ilr.report import DONE
from services.enrolment.schemas import (
    BatchRequest,
    BatchResponse,
    ConsentIn,
    ConsentReceipt,
    EnrolmentReceipt,
    EnrolmentView,
    ErasureReceipt,
    ProgressReceipt,
    UploadReport,
    enrolment_path,
    problem_errors,
    status_code_of,
)
from services.enrolment.use_cases.ilr import UploadInProgress
from services.enrolment.use_cases.intake import Channel, ItemResult, ItemStatus
from services.enrolment.use_cases.privacy import NotFound
from shared.auth import Principal
from shared.contracts.enrolment import Consent, EnrolmentSubmission
from shared.problems import (
    SCHEMA_MISMATCH,
    Problem,
    field_errors,
    problem_response,
    validation_failed,
)
from shared.ratelimit import charge

logger = logging.getLogger(__name__)

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API key", **_PROBLEM},
    403: {"description": "Not a provider key / not contracted", **_PROBLEM},
    413: {"description": "Body too large", **_PROBLEM},
    422: {"description": "Invalid: every error has a field pointer", **_PROBLEM},
    503: {"description": "Backpressure: retry after Retry-After seconds", **_PROBLEM},
}

router = APIRouter(prefix="/v1/enrolments", tags=["enrolments"])


@router.post(
    "",
    status_code=201,
    response_model=EnrolmentReceipt,
    summary="Submit one enrolment",
    description="201 with the new enrolment, 200 with the existing one when the same "
    "submission (provider + learner_ref + learning_aim_ref + start_date, same details) "
    "was accepted before, 409 when that enrolment exists with different details.",
    responses={
        200: {"description": "Already accepted (idempotent replay)", "model": EnrolmentReceipt},
        409: {"description": "Exists with different details", **_PROBLEM},
        **_COMMON_ERRORS,
    },
    dependencies=[Depends(size_limit(lambda s: s.max_item_body_bytes)), Depends(intake_open)],
)
async def submit_enrolment(
    submission: Annotated[EnrolmentSubmission, Body()],
    provider: CurrentProvider,
    ctx: Context,
    response: Response,
) -> EnrolmentReceipt:
    checked = ctx.service.check_valid(submission, provider)
    result = await ctx.service.submit_checked(provider, checked, Channel.HTTP)
    if result.status in (ItemStatus.REJECTED, ItemStatus.CONFLICT):
        raise refusal_problem(result)
    assert result.enrolment_id is not None
    href = enrolment_path(result.enrolment_id)
    response.headers["Location"] = href
    status = Status.CONTINUING
    if result.status is ItemStatus.DUPLICATE:
        response.status_code = 200
        existing = await ctx.service.get(provider, result.enrolment_id)
        status = existing.lifecycle.status if existing else status
    return EnrolmentReceipt(
        enrolment_id=result.enrolment_id,
        result=result.status,
        status=status,
        submission_ref=result.submission_ref,
        href=href,
    )


def refusal_problem(result: ItemResult) -> Problem:
    """A refused or conflicting single submission as problem+json."""
    status = status_code_of(result)
    errors = problem_errors(result.errors)
    if status == 409:
        return Problem(
            409, "Conflict", result.errors[0].message, slug="conflicting-duplicate", errors=errors
        )
    if status == 403:
        return Problem(
            403,
            "Forbidden",
            "The provider is not contracted for this combined authority.",
            slug="not-contracted",
            errors=errors,
        )
    return validation_failed(
        "The submission breaks the enrolment rules; see errors for each field.", errors
    )


@router.post(
    "/batch",
    response_model=BatchResponse,
    summary="Submit up to 1000 enrolments",
    description="Each item is checked exactly like a single submission and accepted or "
    "refused on its own; the accepted ones are stored in one write. Per-item results "
    "carry the status the item would have had as a single POST, and field pointers into "
    "this request (/items/<index>/<field>).",
    responses=_COMMON_ERRORS,
    dependencies=[Depends(intake_open)],
)
async def submit_batch(
    batch: BatchRequest, provider: CurrentProvider, ctx: Context, request: Request
) -> BatchResponse:
    limit = ctx.settings.max_batch_items
    if len(batch.items) > limit:
        raise Problem(
            413,
            "Payload too large",
            f"A batch holds at most {limit} items; split it.",
            slug="batch-too-large",
            errors=[
                {
                    "pointer": "/items",
                    "field": "items",
                    "message": f"at most {limit} items",
                    "type": "too_long",
                }
            ],
        )
    # The rate limit counts items: the request took one token, each further item one more.
    charge(request, len(batch.items) - 1)
    results = await ctx.service.submit(provider, batch.items, Channel.HTTP_BATCH)
    return BatchResponse.of(results)


@router.api_route("/batch", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def batch_method_not_allowed() -> None:
    """Without this, GET /batch would match GET /{enrolment_id} and answer 422."""
    raise Problem(
        405,
        "Method not allowed",
        "Send batches with POST.",
        slug="method-not-allowed",
        headers={"Allow": "POST"},
    )


EnrolmentId = Annotated[str, Path(pattern=r"^enr_[0-9a-f]{32}$", description="Enrolment id")]


@router.get(
    "/{enrolment_id}",
    response_model=EnrolmentView,
    summary="One of the provider's own enrolments",
    responses={
        404: {"description": "Unknown, or another provider's", **_PROBLEM},
        **_COMMON_ERRORS,
    },
)
async def get_enrolment(
    enrolment_id: EnrolmentId, provider: CurrentProvider, ctx: Context
) -> EnrolmentView:
    enrolment = await ctx.service.get(provider, enrolment_id)
    if enrolment is None:
        raise _not_found()
    return EnrolmentView.model_validate(enrolment)


def _not_found() -> Problem:
    return Problem(
        404,
        "Not found",
        "No enrolment of this provider has this id.",
        slug="enrolment-not-found",
    )


@router.post(
    "/{enrolment_id}/progress",
    status_code=202,
    response_model=ProgressReceipt,
    summary="Record attendance, an assessment, a break, a return, completion, an outcome "
    "or a withdrawal",
    description="202 when applied (the event follows via the outbox), 200 when this exact "
    "record was applied before, 409 when the lifecycle forbids it (e.g. completing a "
    "withdrawn enrolment, an outcome before completion).",
    responses={
        200: {"description": "Already applied (idempotent replay)", "model": ProgressReceipt},
        404: {"description": "Unknown, or another provider's", **_PROBLEM},
        409: {"description": "Illegal lifecycle transition", **_PROBLEM},
        **_COMMON_ERRORS,
    },
    dependencies=[Depends(size_limit(lambda s: s.max_item_body_bytes)), Depends(intake_open)],
)
async def record_progress(
    enrolment_id: EnrolmentId,
    progress: Annotated[Progress, Body()],
    provider: CurrentProvider,
    ctx: Context,
    response: Response,
) -> ProgressReceipt:
    try:
        outcome = await ctx.service.record_progress(provider, enrolment_id, progress)
    except IllegalTransition as exc:
        raise Problem(
            409,
            "Illegal transition",
            exc.message,
            slug="illegal-transition",
            errors=[
                {
                    "pointer": exc.pointer,
                    "field": exc.pointer.strip("/").replace("/", "."),
                    "message": exc.message,
                    "type": "illegal_transition",
                }
            ],
        ) from None
    except InvalidProgress as exc:
        raise validation_failed(
            "The progress record is not valid for this enrolment; see errors.",
            problem_errors(exc.errors),
        ) from None
    if outcome is None:
        raise _not_found()
    enrolment, applied = outcome
    if not applied:
        response.status_code = 200
    lc = enrolment.lifecycle
    return ProgressReceipt(
        enrolment_id=enrolment.enrolment_id,
        applied=applied,
        status=lc.status,
        completion_status=lc.completion_status,
        outcome=lc.outcome,
        href=enrolment_path(enrolment.enrolment_id),
    )


@router.post(
    "/{enrolment_id}/consent",
    status_code=202,
    response_model=ConsentReceipt,
    summary="Record a change of the learner's consent (→ ConsentChanged)",
    description="202 when changed (ConsentChanged follows via the outbox: withdrawn "
    "matching consent takes the learner out of the befriending pool and withdraws "
    "pending proposals), 200 when the consent already was exactly this.",
    responses={
        200: {"description": "Unchanged", "model": ConsentReceipt},
        404: {"description": "Unknown, or another provider's", **_PROBLEM},
        **_COMMON_ERRORS,
    },
    dependencies=[Depends(size_limit(lambda s: s.max_item_body_bytes)), Depends(intake_open)],
)
async def change_consent(
    enrolment_id: EnrolmentId,
    body: ConsentIn,
    provider: CurrentProvider,
    ctx: Context,
    response: Response,
) -> ConsentReceipt:
    consent = Consent(matching=body.matching, research=body.research)
    outcome = await privacy_of(ctx).change_consent(provider, enrolment_id, consent)
    if outcome is None:
        raise _not_found()
    enrolment, changed = outcome
    if not changed:
        response.status_code = 200
    return ConsentReceipt(
        enrolment_id=enrolment.enrolment_id,
        changed=changed,
        consent=enrolment.submission.consent,
        href=enrolment_path(enrolment.enrolment_id),
    )


learners_router = APIRouter(prefix="/v1/learners", tags=["privacy"])


LearnerPseudonym = Annotated[
    str, Path(pattern=r"^lp_[0-9a-f]{32}$", description="Learner pseudonym")
]


@learners_router.delete(
    "/{learner}",
    status_code=202,
    response_model=ErasureReceipt,
    summary="Right to erasure: destroy the learner's data key (→ LearnerErased)",
    description="Deletes the learner's enrolments (every personal field) and data key, so "
    "the personal fields sealed in every event ever published for them can no longer be "
    "opened; LearnerErased tells every service to forget its copies. 202 when erased now, "
    "200 when already erased. A provider may erase only learners it enrolled; the data "
    "protection role any learner.",
    responses={
        200: {"description": "Already erased", "model": ErasureReceipt},
        404: {"description": "Unknown, or another provider's learner", **_PROBLEM},
        401: _COMMON_ERRORS[401],
        403: {"description": "Not a provider or data protection key", **_PROBLEM},
    },
)
async def erase_learner(
    learner: LearnerPseudonym,
    principal: Annotated[Principal, Depends(erasure_caller)],
    ctx: Context,
    response: Response,
) -> ErasureReceipt:
    try:
        result = await privacy_of(ctx).erase(principal, learner)
    except NotFound:
        raise Problem(
            404, "Not found", "No learner of yours has this pseudonym.", slug="learner-not-found"
        ) from None
    if result.already_erased:
        response.status_code = 200
    return ErasureReceipt.model_validate(result)


PROGRESS_KINDS = frozenset(
    get_args(m.model_fields["kind"].annotation)[0]
    for m in (
        AttendanceProgress,
        AssessmentProgress,
        BreakProgress,
        ResumeProgress,
        CompletionProgress,
        WithdrawalProgress,
        OutcomeProgress,
    )
)


def install_validation_handler(app: FastAPI) -> None:
    """422 problems as in :mod:`shared.problems`, except that the progress union's tag
    ("completion") is dropped from field paths ('/outcome', not '/completion/outcome')
    and a missing or unknown ``kind`` points at '/kind'."""

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if len(loc) > 2 and loc[0] == "body" and loc[1] in PROGRESS_KINDS:
                err = {**err, "loc": (loc[0], *loc[2:])}
            elif loc == ("body",) and str(err.get("type", "")).startswith("union_tag_"):
                err = {**err, "loc": ("body", "kind")}
            errors.append(err)
        problem = validation_failed(SCHEMA_MISMATCH, field_errors(errors))
        return problem_response(problem, request.url.path)

    app.add_exception_handler(RequestValidationError, on_validation)


# ---------------------------------------------------------------------------- ILR

XML_TYPES = ("application/xml", "text/xml")

ilr_router = APIRouter(prefix="/v1/ilr", tags=["ilr"])

_FILE_PROBLEM_STATUS = {
    FileProblem.UKPRN_MISMATCH: (403, "Forbidden"),
    FileProblem.FORBIDDEN_XML: (422, "Forbidden XML"),
}


UploadId = Annotated[str, Path(pattern=r"^ilr_[0-9a-f]{32}$", description="Upload id")]


def _wait(ctx_max: float, wait: float) -> float:
    return max(0.0, min(wait, ctx_max))


def _answer(doc: dict[str, Any], *, created: bool) -> JSONResponse:
    report = UploadReport.of(doc)
    done = doc["status"] in DONE
    status = 200 if done or not created else 202
    headers = {"Location": report.href} if created else {}
    if not done:
        headers["Retry-After"] = "2"
    return JSONResponse(report.model_dump(mode="json"), status_code=status, headers=headers)


def file_problem(exc: IlrFileError) -> Problem:
    status, title = _FILE_PROBLEM_STATUS.get(exc.problem, (422, "Invalid ILR file"))
    return Problem(
        status,
        title,
        f"{exc.message}. Nothing of this file was stored.",
        slug=exc.problem.value,
    )


@ilr_router.post(
    "/submissions",
    status_code=202,
    response_model=UploadReport,
    summary="Upload an ILR file (the month's cumulative XML); get a submission report",
    description="The body is the ILR XML file exactly as sent to Submit Learner Data "
    "(Content-Type application/xml), streamed. The file is checked whole first (well "
    "formed, no DTD or entities, namespace ESFA/ILR/2025-26 or 2026-27 with the matching "
    "Header Year, both UKPRNs the caller's): a file that fails gets a problem+json and "
    "nothing is stored. Then it is processed as a difference against earlier uploads and "
    "JSON submissions: only new aims, completions, withdrawals, outcomes, breaks and "
    "returns emit events. 202 with Location while processing (poll it, or pass "
    "?wait=<seconds> here or there to await the report); 200 when the report is final.",
    responses={
        200: {"description": "Processed within ?wait", "model": UploadReport},
        403: {"description": "A UKPRN in the file is not the caller's", **_PROBLEM},
        409: {"description": "An upload for this provider and year is processing", **_PROBLEM},
        413: {"description": "File larger than ENROLMENT_ILR_MAX_UPLOAD_BYTES", **_PROBLEM},
        415: {"description": "Not application/xml", **_PROBLEM},
        422: {"description": "Malformed XML, DTD/entities, wrong namespace or year", **_PROBLEM},
        503: {"description": "Backpressure: retry after Retry-After seconds", **_PROBLEM},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in XML_TYPES},
        }
    },
    dependencies=[Depends(intake_open)],
)
async def upload_ilr(
    request: Request,
    provider: CurrentProvider,
    ctx: Context,
    intake: Intake,
    wait: Annotated[
        float, Query(ge=0, description="Seconds to await the report (capped by the server).")
    ] = 0.0,
) -> JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in XML_TYPES:
        raise Problem(
            415,
            "Unsupported media type",
            "Send the ILR file as application/xml.",
            slug="unsupported-media-type",
        )
    try:
        doc = await intake.receive(provider, request.stream())
    except IlrFileError as exc:
        raise file_problem(exc) from None
    except UploadInProgress:
        raise Problem(
            409,
            "Conflict",
            "An ILR upload of this provider for this collection year is still being "
            "processed; wait for its report, then upload again.",
            slug="ilr-upload-in-progress",
            headers={"Retry-After": "10"},
        ) from None
    waited = _wait(ctx.settings.ilr_max_wait_s, wait)
    if waited > 0:
        doc = await intake.wait(provider, doc["_id"], waited) or doc
    return _answer(doc, created=True)


@ilr_router.get(
    "/submissions/{upload_id}",
    response_model=UploadReport,
    summary="An ILR upload's progress and submission report",
    responses={404: {"description": "Unknown, or another provider's", **_PROBLEM}},
)
async def get_upload(
    upload_id: UploadId,
    provider: CurrentProvider,
    ctx: Context,
    intake: Intake,
    wait: Annotated[
        float, Query(ge=0, description="Seconds to await completion (capped by the server).")
    ] = 0.0,
) -> JSONResponse:
    doc = await intake.wait(provider, upload_id, _wait(ctx.settings.ilr_max_wait_s, wait))
    if doc is None:
        raise Problem(
            404, "Not found", "No ILR upload of this provider has this id.", slug="upload-not-found"
        )
    return _answer(doc, created=False)
