"""Enrolment's routes and subscribers: thin adapters from HTTP / Kafka to the service layer."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, get_args

from aiokafka import ConsumerRecord
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ConfigDict, Field

from services.enrolment.api import (
    BatchRequest,
    BatchResponse,
    EnrolmentReceipt,
    EnrolmentView,
    ProgressReceipt,
    enrolment_path,
    problem_errors,
    status_code_of,
)
from services.enrolment.domain import (
    AssessmentProgress,
    AttendanceProgress,
    BreakProgress,
    CompletionProgress,
    FieldError,
    IllegalTransition,
    InvalidProgress,
    OutcomeProgress,
    Progress,
    Provider,
    ResumeProgress,
    Status,
    WithdrawalProgress,
)
from services.enrolment.inbound_auth import InboundAuthenticator
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases.intake import (
    Channel,
    EnrolmentService,
    InboundItem,
    ItemResult,
    ItemStatus,
)
from services.enrolment.use_cases.privacy import NotFound, PrivacyService
from shared import topics
from shared.auth import ApiKeyStore, Principal, Role, authenticate
from shared.consuming import (
    Probe,
    consume_policy,
    dead_letter_to,
    raw_body_decoder,
    tolerant_batch_parser,
)
from shared.contracts.enrolment import Consent, EnrolmentSubmission, InboundCoordinates
from shared.dead_letters import PoisonMessage, RetryPolicy, retrying
from shared.health import DependencyWatch
from shared.mongo import mongo_ping
from shared.outbox import OutboxRelay
from shared.problems import (
    SCHEMA_MISMATCH,
    Problem,
    field_errors,
    problem_response,
    validation_failed,
)
from shared.ratelimit import charge
from shared.service import Runtime

logger = logging.getLogger(__name__)

STATE_KEY = "enrolment"


@dataclass(frozen=True)
class EnrolmentContext:
    """What the routes and subscribers need, built in the lifespan."""

    settings: EnrolmentSettings
    service: EnrolmentService
    keys: ApiKeyStore
    relay: OutboxRelay
    privacy: PrivacyService | None = None
    broker_watch: DependencyWatch | None = None
    inbound_auth: InboundAuthenticator | None = None


def context_of(request: Request) -> EnrolmentContext:
    ctx: EnrolmentContext = request.app.state.runtime.state[STATE_KEY]
    return ctx


Context = Annotated[EnrolmentContext, Depends(context_of)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ProviderKey",
    description="The provider's API key: `Authorization: Bearer <key>`.",
)


async def current_provider(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Provider:
    header = f"Bearer {credentials.credentials}" if credentials else None
    principal = await authenticate(ctx.keys, header, [Role.PROVIDER])
    provider = await ctx.service.provider(principal.ukprn)
    if provider is None:
        raise Problem(
            403,
            "Forbidden",
            "This key's provider is not registered or has been deactivated.",
            slug="provider-inactive",
        )
    return provider


CurrentProvider = Annotated[Provider, Depends(current_provider)]


def _size_limit(limit: Callable[[EnrolmentSettings], int]) -> Callable[..., Awaitable[None]]:
    async def check(request: Request, ctx: Context) -> None:
        length = request.headers.get("content-length", "")
        max_bytes = limit(ctx.settings)
        if length.isdigit() and int(length) > max_bytes:
            raise Problem(
                413,
                "Payload too large",
                f"This endpoint accepts bodies up to {max_bytes} bytes.",
                slug="payload-too-large",
            )

    return check


async def intake_open(ctx: Context) -> None:
    """Backpressure: refuse new work while the broker is unreachable or not keeping up
    (what is accepted is stored with its events; they are published when it is back)."""
    if ctx.broker_watch is not None and not ctx.broker_watch.available:
        raise Problem(
            503,
            "Service unavailable",
            "The event broker is unreachable; nothing was stored. Retry later.",
            slug="broker-unavailable",
            headers={"Retry-After": str(ctx.settings.outbox_retry_after_s)},
        )
    if ctx.relay.backlog > ctx.settings.outbox_backlog_limit:
        raise Problem(
            503,
            "Service unavailable",
            "Events are not being published fast enough (broker unavailable?); "
            "nothing was stored. Retry later.",
            slug="intake-backpressure",
            headers={"Retry-After": str(ctx.settings.outbox_retry_after_s)},
        )


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
    dependencies=[Depends(_size_limit(lambda s: s.max_item_body_bytes)), Depends(intake_open)],
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
    return EnrolmentView.of(enrolment)


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
    dependencies=[Depends(_size_limit(lambda s: s.max_item_body_bytes)), Depends(intake_open)],
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


def _privacy(ctx: EnrolmentContext) -> PrivacyService:
    if ctx.privacy is None:
        raise Problem(503, "Service unavailable", "Privacy features are not configured.")
    return ctx.privacy


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
    dependencies=[Depends(_size_limit(lambda s: s.max_item_body_bytes)), Depends(intake_open)],
)
async def change_consent(
    enrolment_id: EnrolmentId,
    body: ConsentIn,
    provider: CurrentProvider,
    ctx: Context,
    response: Response,
) -> ConsentReceipt:
    consent = Consent(matching=body.matching, research=body.research)
    outcome = await _privacy(ctx).change_consent(provider, enrolment_id, consent)
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

_erasure_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ProviderOrDataProtectionKey",
    description="A provider's key (its own learners) or a data protection officer's key.",
)


async def erasure_caller(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_erasure_bearer)],
) -> Principal:
    header = f"Bearer {credentials.credentials}" if credentials else None
    return await authenticate(ctx.keys, header, [Role.PROVIDER, Role.DATA_PROTECTION])


class ErasureReceipt(BaseModel):
    learner: str
    erased_at: datetime
    enrolment_ids: list[str]
    already_erased: bool


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
        result = await _privacy(ctx).erase(principal, learner)
    except NotFound:
        raise Problem(
            404, "Not found", "No learner of yours has this pseudonym.", slug="learner-not-found"
        ) from None
    if result.already_erased:
        response.status_code = 200
    return ErasureReceipt(
        learner=result.learner,
        erased_at=result.erased_at,
        enrolment_ids=list(result.enrolment_ids),
        already_erased=result.already_erased,
    )


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


# ---------------------------------------------------------------------------------- Kafka


# A refusal (SubmissionRejected) echoes the record's key and ce_id, so a record whose
# key or ce_id is longer than this is dead-lettered instead: a UKPRN is 8 digits, and a
# refusal built from a 700 KB key would be too large to publish (docs/delivery.md).
MAX_INBOUND_KEY_BYTES = 256
MAX_INBOUND_CE_ID_BYTES = 256


def decode_inbound(
    record: ConsumerRecord[Any, Any], *, max_value_bytes: int | None = None
) -> InboundItem:
    """One inbound record → an item to check, or PoisonMessage for bytes no check can use.

    Body: the submission as JSON (the same document as the HTTP body), at most
    ``max_value_bytes`` (the HTTP limit for one submission). Key: the provider's UKPRN.
    CloudEvent headers are optional; if ``ce_type`` is present it must be the submission
    type. Oversized bodies, keys and ``ce_id`` headers are poison (dead-lettered, with
    digests if too large to keep), never echoed in a refusal.
    """
    value_size = len(record.value or b"")
    if max_value_bytes is not None and value_size > max_value_bytes:
        raise PoisonMessage(
            f"record too large: {value_size} bytes (a submission is at most {max_value_bytes})"
        )
    if record.key is not None and len(record.key) > MAX_INBOUND_KEY_BYTES:
        raise PoisonMessage(
            f"record key too large: {len(record.key)} bytes "
            f"(expected a provider UKPRN, at most {MAX_INBOUND_KEY_BYTES})"
        )
    for name, raw_value in record.headers or ():
        if name == "ce_id" and raw_value is not None and len(raw_value) > MAX_INBOUND_CE_ID_BYTES:
            raise PoisonMessage(
                f"ce_id header too large: {len(raw_value)} bytes "
                f"(at most {MAX_INBOUND_CE_ID_BYTES})"
            )
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    ce_type = headers.get("ce_type")
    if ce_type and ce_type != EnrolmentSubmission.ce_type():
        raise PoisonMessage(
            f"unexpected ce_type on {topics.ENROLMENT_INBOUND}; "
            f"expected {EnrolmentSubmission.ce_type()}"
        )
    if not record.value:
        raise PoisonMessage("empty record: expected a JSON submission")
    try:
        payload = json.loads(record.value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nested deeper than the parser allows (a hostile document).
        raise PoisonMessage(f"body is not JSON ({type(exc).__name__})") from None
    provider_ref = None
    if record.key:
        try:
            provider_ref = record.key.decode().strip() or None
        except UnicodeDecodeError:
            provider_ref = None
    return InboundItem(
        coordinates=InboundCoordinates(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            ce_id=headers.get("ce_id"),
        ),
        provider_ref=provider_ref,
        payload=payload,
    )


def refused_inbound(record: ConsumerRecord[Any, Any], refusal: FieldError) -> InboundItem:
    """An unauthenticated record: identified by its coordinates and claimed key only."""
    try:
        claimed = (record.key or b"").decode().strip()[:64] or None
    except UnicodeDecodeError:
        claimed = None
    return InboundItem(
        coordinates=InboundCoordinates(
            topic=record.topic, partition=record.partition, offset=record.offset
        ),
        provider_ref=claimed,
        payload=None,
        refusal=refusal,
    )


INTAKE_RETRY = RetryPolicy(attempts=5, initial_delay_s=0.2, max_delay_s=5.0)


async def store_inbound(
    service: EnrolmentService,
    decoded: Sequence[tuple[ConsumerRecord[Any, Any], InboundItem]],
    healthy: Probe | None = None,
) -> list[tuple[ConsumerRecord[Any, Any], BaseException]]:
    """Store a batch in one transaction. Transient failures are retried; if they persist
    while the database is down, :class:`DependencyUnavailable` is raised (the batch is
    redelivered once it is back). Anything else, or transient failures while the
    database answers, means some record trips an error: the records then go one by one,
    and only the ones that fail are returned to be dead-lettered (``RetriesExhausted``
    for transient ones), so one bad record never sinks the good ones. Without a
    ``healthy`` probe, transient failures are always treated as an outage."""
    failed: list[tuple[ConsumerRecord[Any, Any], BaseException]] = []

    async def note(pair: tuple[ConsumerRecord[Any, Any], InboundItem], e: BaseException) -> None:
        failed.append((pair[0], e))

    await consume_policy(
        decoded,
        lambda: retrying(lambda: service.submit_inbound([i for _, i in decoded]), INTAKE_RETRY),
        lambda pair: retrying(functools.partial(service.submit_inbound, [pair[1]]), INTAKE_RETRY),
        healthy=healthy,
        failed=note,
        what="intake batch",
        poison=lambda exc: PoisonMessage(f"intake failed: {type(exc).__name__}"),
    )
    return failed


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    settings = runtime.settings
    assert isinstance(settings, EnrolmentSettings)
    kafka = KafkaRouter()

    # One transaction per batch of records. NACK_ON_ERROR: offsets are committed only
    # after the batch is stored (exactly the batch's offsets: shared.consuming); an
    # exception (the database down through the retries) rewinds every partition of the
    # batch, and redelivery is idempotent (enrolment ids and rejection ids are
    # deterministic). See docs/delivery.md.
    @kafka.subscriber(
        topics.ENROLMENT_INBOUND,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=settings.inbound_max_records,
        batch_timeout_ms=settings.inbound_batch_timeout_ms,
        parser=tolerant_batch_parser,
        decoder=raw_body_decoder,
    )
    async def on_submissions(message: KafkaMessage) -> None:
        ctx: EnrolmentContext = runtime.state[STATE_KEY]
        raw = message.raw_message
        records: Sequence[ConsumerRecord[Any, Any]] = raw if isinstance(raw, tuple) else (raw,)
        decoded: list[tuple[ConsumerRecord[Any, Any], InboundItem]] = []
        poison: list[tuple[ConsumerRecord[Any, Any], BaseException]] = []
        # Who sent each record is established first (signature headers); a record that
        # fails is refused as unauthenticated without its body ever being parsed.
        outcomes = await ctx.inbound_auth.verify(records) if ctx.inbound_auth else None
        for index, record in enumerate(records):
            outcome = outcomes[index] if outcomes is not None else None
            if isinstance(outcome, FieldError):
                decoded.append((record, refused_inbound(record, outcome)))
                continue
            try:
                decoded.append(
                    (record, decode_inbound(record, max_value_bytes=settings.max_item_body_bytes))
                )
            except PoisonMessage as exc:
                poison.append((record, exc))
        if decoded:
            poison += await store_inbound(ctx.service, decoded, lambda: mongo_ping(runtime.mongo))
        dead_letter = dead_letter_to(runtime.dead_letters)
        for record, error in poison:
            await dead_letter(record, error)

    return [kafka]
