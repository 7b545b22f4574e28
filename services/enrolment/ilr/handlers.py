"""Routes of ILR file intake: thin translation between HTTP and :mod:`.service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from services.enrolment.handlers import Context, CurrentProvider, intake_open
from services.enrolment.ilr.api import UploadReport, upload_path
from services.enrolment.ilr.parser import FileProblem, IlrFileError
from services.enrolment.use_cases.ilr import DONE, IlrIntake, UploadInProgress
from shared.problems import Problem

ILR_STATE_KEY = "enrolment.ilr"
XML_TYPES = ("application/xml", "text/xml")

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}

router = APIRouter(prefix="/v1/ilr", tags=["ilr"])

_STATUS = {
    FileProblem.UKPRN_MISMATCH: (403, "Forbidden"),
    FileProblem.FORBIDDEN_XML: (422, "Forbidden XML"),
}


def ilr_of(request: Request) -> IlrIntake:
    intake: IlrIntake | None = request.app.state.runtime.state.get(ILR_STATE_KEY)
    if intake is None:
        raise Problem(503, "Service unavailable", "ILR intake is not running.")
    return intake


Intake = Annotated[IlrIntake, Depends(ilr_of)]
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
    status, title = _STATUS.get(exc.problem, (422, "Invalid ILR file"))
    return Problem(
        status,
        title,
        f"{exc.message}. Nothing of this file was stored.",
        slug=exc.problem.value,
    )


@router.post(
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


@router.get(
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


__all__ = ["ILR_STATE_KEY", "router", "upload_path"]
