"""Reporting's HTTP entrypoint: the ``/v1/reports`` measure and QAR routes (thin:
request → use case in use_cases/queries.py → response)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Query, Request, Response

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
from services.reporting.qar_repository import MongoQarReader
from services.reporting.repository import ReportReader
from services.reporting.schemas import BreakdownReport, QarReport, SummaryReport
from services.reporting.settings import ReportingSettings
from services.reporting.use_cases import queries
from shared.auth import ApiKeyStore, Principal, Role, authenticate
from shared.contracts.reference import (
    COMBINED_AUTHORITY_NAMES,
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Programme,
)
from shared.downloads import CSV_RESPONSES, csv_download
from shared.problems import Problem, field_errors, validation_failed
from shared.service import runtime_of

REPORT_ROLES = (Role.COORDINATOR, Role.ANALYST)
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
LA_PATTERN = r"^E0[6-9]\d{6}$"
LEVEL_PATTERN = "^(" + "|".join(filter_codes("level")) + ")$"

# The filters every report takes, declared once for every route that takes them.
AuthorityParam = Annotated[
    CombinedAuthority | None, Query(description="ONS code of a combined authority.")
]
BoroughParam = Annotated[
    str | None, Query(pattern=LA_PATTERN, description="ONS code of a local authority.")
]
MonthFromParam = Annotated[
    str | None, Query(alias="from", pattern=MONTH_PATTERN, description="YYYY-MM")
]
MonthToParam = Annotated[
    str | None, Query(alias="to", pattern=MONTH_PATTERN, description="YYYY-MM")
]
UnroundedParam = Annotated[bool, Query(description="Unrounded figures (analyst role only).")]

router = APIRouter(prefix="/v1/reports", tags=["reports"])


async def report_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    keys: ApiKeyStore = runtime_of(request).state["api_keys"]
    return await authenticate(keys, authorization, REPORT_ROLES)


def report_request(
    combined_authority: AuthorityParam = None,
    local_authority: BoroughParam = None,
    programme: Annotated[Programme | None, Query()] = None,
    level: Annotated[
        str | None, Query(pattern=LEVEL_PATTERN, description="A level, or 'none'.")
    ] = None,
    month_from: MonthFromParam = None,
    month_to: MonthToParam = None,
    unrounded: UnroundedParam = False,
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
