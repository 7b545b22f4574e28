"""Reporting's subscribers and routes (thin: the work is in projector.py and queries.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.reporting.domain.dimensions import (
    FILTERED,
    LEVEL_LABELS,
    BreakdownBy,
    Filters,
    filter_codes,
)
from services.reporting.domain.disclosure import DisclosureMethod
from services.reporting.domain.qar import QarBy
from services.reporting.domain.reports import breakdown_csv
from services.reporting.projector import Projector
from services.reporting.qar_repository import MongoQarReader
from services.reporting.repository import ReportReader
from services.reporting.schemas import BreakdownReport, QarReport, SummaryReport
from services.reporting.settings import ReportingSettings
from services.reporting.use_cases import queries
from shared import topics
from shared.auth import ApiKeyStore, Principal, Role, authenticate
from shared.consuming import (
    consume_policy,
    dead_letter_to,
    exclude_from_commit,
    raw_body_decoder,
    tolerant_batch_parser,
)
from shared.contracts.reference import (
    COMBINED_AUTHORITY_NAMES,
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Programme,
)
from shared.contracts.registry import registry_for
from shared.dead_letters import RecordLike
from shared.downloads import CSV_RESPONSES, csv_download
from shared.mongo import mongo_ping
from shared.positions import TopicPartition, rewind
from shared.problems import Problem, field_errors, validation_failed
from shared.service import Runtime, runtime_of
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

CONSUMED = registry_for(topics.ENROLMENT_EVENTS, topics.MATCHING_MATCHES)
REPORT_ROLES = (Role.COORDINATOR, Role.ANALYST)
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
LA_PATTERN = r"^E0[6-9]\d{6}$"
LEVEL_PATTERN = "^(" + "|".join(filter_codes("level")) + ")$"


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    settings = cast(ReportingSettings, runtime.settings)
    router = KafkaRouter()

    # One batch = one MongoDB transaction. NACK_ON_ERROR: the offsets are committed only
    # after the handler returns, i.e. after the transaction has committed, and exactly
    # the batch's offsets (shared.consuming.tolerant_batch_parser); if it raises
    # (the database stayed unavailable through the retries) every partition of the batch
    # is rewound to its first record and the batch comes again. Redelivered records are
    # fenced by the positions stored with the read models.
    @router.subscriber(
        topics.ENROLMENT_EVENTS,
        topics.MATCHING_MATCHES,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        batch=True,
        max_records=settings.projection_max_records,
        batch_timeout_ms=settings.projection_batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser,
        decoder=raw_body_decoder,
        title="reporting-projection",
        description="Projects enrolment and match events into the reporting read models.",
    )
    async def project(message: KafkaMessage) -> None:
        async def healthy() -> bool:
            return await mongo_ping(runtime.mongo)

        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        projector: Projector = runtime.state["projector"]
        continue_traces(runtime.telemetry, records)
        # Transient errors are retried with backoff in the projector. Then, database
        # down: rewind, retried until it is back. Database up: the batch's records go
        # one by one, and any that still fail are dead-lettered (exhausted) instead of
        # blocking their partitions.
        result = await consume_policy(
            records,
            lambda: projector.handle(records, rewind=lambda tps: rewind_batch(message, tps)),
            lambda r: projector.handle([r]),
            healthy=healthy,
            failed=dead_letter_to(runtime.dead_letters),
            what="projection batch",
        )
        if result is None:
            return
        logger.debug(
            "batch of %d: %d applied, %d duplicates, %d poison",
            result.records,
            result.applied,
            result.duplicate_offsets + result.duplicate_event_ids,
            result.poison,
        )

    return [router]


async def rewind_batch(
    message: KafkaMessage, partitions: set[TopicPartition]
) -> set[TopicPartition]:
    """Seek ``partitions`` back to their start and keep this batch from committing them."""
    exclude_from_commit(message, partitions)
    return await rewind(message.consumer, partitions)


def continue_traces(telemetry: Telemetry, records: Sequence[RecordLike]) -> None:
    """A short span per record under the record's own trace, linked to the batch span.

    FastStream gives a batch one span that only *links* to its records' traces; this
    puts reporting's receipt of each event into the trace of the request that caused it,
    and the link leads from there to the batch's span and its MongoDB writes.
    """
    tracer = telemetry.tracer()
    batch_span = trace.get_current_span().get_span_context()
    links = [trace.Link(batch_span)] if batch_span.is_valid else []
    propagator = TraceContextTextMapPropagator()
    for record in records:
        carrier = {
            k: v.decode("latin-1")
            for k, v in record.headers or ()
            if k in ("traceparent", "ce_traceparent")
        }
        parent = carrier.get("traceparent") or carrier.get("ce_traceparent")
        if parent is None:
            continue
        span = tracer.start_span(
            f"{record.topic} project",
            context=propagator.extract({"traceparent": parent}),
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.kafka.destination.partition": record.partition,
                "messaging.kafka.message.offset": record.offset,
            },
        )
        span.end()


# ---------------------------------------------------------------------------------------
# HTTP

router = APIRouter(prefix="/v1/reports", tags=["reports"])


async def report_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    keys: ApiKeyStore = runtime_of(request).state["api_keys"]
    return await authenticate(keys, authorization, REPORT_ROLES)


def report_request(
    combined_authority: Annotated[
        CombinedAuthority | None, Query(description="ONS code of a combined authority.")
    ] = None,
    local_authority: Annotated[
        str | None, Query(pattern=LA_PATTERN, description="ONS code of a local authority.")
    ] = None,
    programme: Annotated[Programme | None, Query()] = None,
    level: Annotated[
        str | None, Query(pattern=LEVEL_PATTERN, description="A level, or 'none'.")
    ] = None,
    month_from: Annotated[
        str | None, Query(alias="from", pattern=MONTH_PATTERN, description="YYYY-MM")
    ] = None,
    month_to: Annotated[
        str | None, Query(alias="to", pattern=MONTH_PATTERN, description="YYYY-MM")
    ] = None,
    unrounded: Annotated[bool, Query(description="Unrounded figures (analyst role only).")] = False,
) -> queries.ReportRequest:
    return queries.ReportRequest(
        combined_authority=combined_authority,
        local_authority=local_authority,
        programme=programme.value if programme else None,
        level=level,
        month_from=month_from,
        month_to=month_to,
        unrounded=unrounded,
    )


FILTER_PARAMS = frozenset(
    {"combined_authority", "local_authority", *FILTERED, "from", "to", "unrounded"}
)


# A caller trying to set disclosure (rounding, threshold) per request is told why not.
SETTINGS_HINT = "Disclosure settings are deployment settings, not request parameters."


def known_params(
    *extra: str, allowed: frozenset[str] = FILTER_PARAMS, hint: str = SETTINGS_HINT
) -> Any:
    """A dependency rejecting query parameters a report does not know (a misspelt filter
    or a disclosure setting would otherwise be silently ignored): 422 problem+json naming
    each. ``allowed``: the report's filters (``extra`` its own parameters besides)."""
    every = allowed | set(extra)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - every)
        if unknown:
            detail = (
                f"Unknown query parameter(s): {', '.join(unknown)}. "
                f"Allowed: {', '.join(sorted(every))}."
            )
            raise validation_failed(
                f"{detail} {hint}" if hint else detail,
                field_errors(
                    {"loc": (name,), "msg": "unknown query parameter", "type": "extra_forbidden"}
                    for name in unknown
                ),
            )

    return Depends(check)


Caller = Annotated[Principal, Depends(report_caller)]
Params = Annotated[queries.ReportRequest, Depends(report_request)]


# The HTTP answer to each refusal of queries.resolve: status, title, problem slug.
_REFUSALS: dict[type[queries.ReportRefused], tuple[int, str, str]] = {
    queries.UnroundedNeedsAnalyst: (403, "Forbidden", "unrounded-needs-analyst"),
    queries.OutsideScope: (403, "Forbidden", "outside-scope"),
    queries.InvalidReportQuery: (422, "Validation failed", "validation-failed"),
}


def problem_for(exc: queries.ReportRefused) -> Problem:
    status, title, slug = _REFUSALS[type(exc)]
    errors = None
    if isinstance(exc, queries.InvalidReportQuery):
        errors = field_errors([{"loc": (exc.field,), "msg": exc.reason, "type": "value_error"}])
    return Problem(status, title, str(exc), slug=slug, errors=errors)


def resolve(caller: Principal, params: queries.ReportRequest) -> tuple[Filters, bool]:
    """queries.resolve, its refusals answered as problem+json."""
    try:
        return queries.resolve(caller, params)
    except queries.ReportRefused as exc:
        raise problem_for(exc) from None


@dataclass(frozen=True)
class ReportCall:
    """One report request as the routes receive it (see :func:`report_call`)."""

    request: Request
    response: Response
    caller: Principal
    params: queries.ReportRequest

    def prepare(self, report: str) -> tuple[Filters, DisclosureMethod | None]:
        """The caller's filters (refusals answered as problem+json) and the disclosure
        method for ``report``: None when unrounded, which is audit-logged. Report figures
        are never cached."""
        filters, rounded = resolve(self.caller, self.params)
        self.response.headers["Cache-Control"] = "no-store"
        if not rounded:
            queries.audit_unrounded(self.caller, report, filters)
            return filters, None
        settings = cast(ReportingSettings, runtime_of(self.request).settings)
        return filters, settings.disclosure()


def report_call(request: Request, response: Response, caller: Caller, params: Params) -> ReportCall:
    return ReportCall(request, response, caller, params)


def _reader(request: Request) -> ReportReader:
    reader: ReportReader = runtime_of(request).state["reader"]
    return reader


Report = Annotated[ReportCall, Depends(report_call)]
Reader = Annotated[ReportReader, Depends(_reader)]


@router.get(
    "/summary",
    summary="Headline outcome, ESOL and matching measures",
    response_model=SummaryReport,
    dependencies=[known_params()],
)
async def get_summary(call: Report, reader: Reader) -> dict[str, Any]:
    filters, control = call.prepare("summary")
    return await queries.summary(reader, filters, control=control)


@router.get(
    "/breakdown",
    summary="Measures by one dimension, with a total row",
    response_model=BreakdownReport,
    dependencies=[known_params("by")],
)
async def get_breakdown(
    call: Report, reader: Reader, by: Annotated[BreakdownBy, Query()]
) -> dict[str, Any]:
    filters, control = call.prepare(f"breakdown:{by}")
    return await queries.breakdown(reader, by, filters, control=control)


@router.get(
    "/export.csv",
    summary="A breakdown as CSV (disclosure-controlled unless unrounded)",
    response_class=Response,
    responses=CSV_RESPONSES,
    dependencies=[known_params("by")],
)
async def export_csv(
    call: Report, reader: Reader, by: Annotated[BreakdownBy, Query()] = "local_authority"
) -> Response:
    filters, control = call.prepare(f"export:{by}")
    table = await queries.breakdown(reader, by, filters, control=control)
    suffix = "unrounded" if control is None else "published"
    return csv_download(breakdown_csv(table), f"commonground-{by}-{suffix}.csv")


@router.get(
    "/meta",
    summary="Who is calling, and the areas and vocabularies they may filter on",
    dependencies=[known_params()],
)
async def get_meta(response: Response, caller: Caller) -> dict[str, Any]:
    response.headers["Cache-Control"] = "no-store"
    scope = queries.scope_of(caller)
    return {
        "principal": {"name": caller.name, "role": caller.role.value},
        "can_unround": caller.role == Role.ANALYST,
        "combined_authorities": [
            {
                "code": ca,
                "name": COMBINED_AUTHORITY_NAMES[CombinedAuthority(ca)],
                "local_authorities": [
                    {"code": code, "name": name}
                    for code, name in sorted(
                        LOCAL_AUTHORITIES[CombinedAuthority(ca)].items(), key=lambda i: i[1]
                    )
                ],
            }
            for ca in scope
        ],
        "programmes": [{"code": p.value, "name": p.label} for p in Programme],
        "levels": [{"code": code, "name": name} for code, name in LEVEL_LABELS.items()],
    }


# ---------------------------------------------------------------------------------------
# QAR measures (issue 15; domain/qar.py, docs/qar.md).

QAR_YEAR_PATTERN = r"^\d{4}/\d{2}$"


@router.get(
    "/qar",
    summary="Achievement, retention and pass rates by the national QAR definitions",
    description="Each aim counts in its hybrid end year (the later of its planned and "
    "actual end years); leavers = completed + withdrawn + breaks with no restart, "
    "withdrawals inside the funding qualifying period excluded. Rows by hybrid end year "
    "(default), borough, programme or level; `year` (repeatable, e.g. 2025/26) narrows "
    "the years. `from`/`to` do not apply (start cohorts are not QAR cohorts). Disclosure "
    "control as for every report: rates from published counts. See docs/qar.md.",
    response_model=QarReport,
    dependencies=[known_params("by", "year")],
)
async def get_qar(
    call: Report,
    by: Annotated[QarBy, Query()] = "year",
    year: Annotated[list[str] | None, Query(description="Hybrid end year, e.g. 2025/26.")] = None,
) -> dict[str, Any]:
    years = sorted(set(year or []))
    bad = [y for y in years if not re.fullmatch(QAR_YEAR_PATTERN, y)]
    if bad or call.params.month_from or call.params.month_to:
        field, message = (
            ("year", "an academic year like 2025/26") if bad else ("from", "not for QAR")
        )
        raise validation_failed(
            "QAR figures are by hybrid end year: use year=YYYY/YY (e.g. 2025/26), not from/to.",
            field_errors([{"loc": (field,), "msg": message}]),
        )
    filters, control = call.prepare(f"qar:{by}")
    reader = MongoQarReader(runtime_of(call.request).db)
    return await queries.qar(reader, by, filters, years, control=control)
