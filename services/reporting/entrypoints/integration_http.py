"""Routes of the integration reports (issue 16): thin, like every report route —
authenticate (coordinator or analyst), resolve scope, call the use case, answer.

| route | report |
|---|---|
| ``GET /v1/reports/bridges`` | lasting bridges by borough and month of confirmation |
| ``GET /v1/reports/waiting?by=`` | who is left waiting, by age band, sex, ethnic group or borough |
| ``GET /v1/reports/indicators`` (``.csv``) | Indicators of Integration per borough and quarter |
| ``GET /v1/reports/esol-comparison`` | stratified matched / unmatched ESOL comparison |
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.reporting.domain.dimensions import FILTERED
from services.reporting.domain.integration.indicators import indicators_csv
from services.reporting.domain.integration.waiting import WaitingBy
from services.reporting.entrypoints.http import (
    FILTER_PARAMS,
    AuthorityParam,
    BoroughParam,
    Caller,
    MonthFromParam,
    MonthToParam,
    ReportCall,
    UnroundedParam,
    known_params,
)
from services.reporting.integration_repository import IntegrationReader
from services.reporting.integration_schemas import (
    BridgesReport,
    EsolComparisonReport,
    IndicatorsReport,
    WaitingReport,
)
from services.reporting.use_cases import integration_queries, queries
from shared.downloads import CSV_RESPONSES, csv_download
from shared.service import runtime_of

router = APIRouter(prefix="/v1/reports", tags=["integration"])

# The integration reports fix their own programmes: no programme or level filter.
AREA_PARAMS = FILTER_PARAMS - set(FILTERED)


def only_params(*extra: str) -> Any:
    """Reject parameters these reports do not take, 422 problem+json naming each."""
    return known_params(*extra, allowed=AREA_PARAMS, hint="")


def area_request(
    combined_authority: AuthorityParam = None,
    local_authority: BoroughParam = None,
    month_from: MonthFromParam = None,
    month_to: MonthToParam = None,
    unrounded: UnroundedParam = False,
) -> queries.ReportRequest:
    return queries.ReportRequest(
        combined_authority=combined_authority,
        local_authority=local_authority,
        month_from=month_from,
        month_to=month_to,
        unrounded=unrounded,
    )


def area_call(
    request: Request,
    response: Response,
    caller: Caller,
    area: Annotated[queries.ReportRequest, Depends(area_request)],
) -> ReportCall:
    return ReportCall(request, response, caller, area)


def _reader(request: Request) -> IntegrationReader:
    reader: IntegrationReader = runtime_of(request).state["integration_reader"]
    return reader


Report = Annotated[ReportCall, Depends(area_call)]
Reader = Annotated[IntegrationReader, Depends(_reader)]


def _today() -> date:
    return datetime.now(UTC).date()


@router.get(
    "/bridges",
    response_model=BridgesReport,
    summary="Lasting bridges: cross-background matches still active at 6 weeks and 6 months",
    dependencies=[only_params()],
)
async def get_bridges(call: Report, reader: Reader) -> dict[str, Any]:
    filters, control = call.prepare("bridges")
    return await integration_queries.bridges(reader, filters, today=_today(), control=control)


@router.get(
    "/waiting",
    response_model=WaitingReport,
    summary="Who is left waiting: unmatched rate and median wait by group",
    dependencies=[only_params("by")],
)
async def get_waiting(
    call: Report, reader: Reader, by: Annotated[WaitingBy, Query()] = "ethnic_group"
) -> dict[str, Any]:
    filters, control = call.prepare(f"waiting:{by}")
    return await integration_queries.waiting(reader, by, filters, control=control)


@router.get(
    "/indicators",
    response_model=IndicatorsReport,
    summary="Indicators of Integration per borough and quarter",
    dependencies=[only_params()],
)
async def get_indicators(call: Report, reader: Reader) -> dict[str, Any]:
    filters, control = call.prepare("indicators")
    return await integration_queries.indicators(reader, filters, today=_today(), control=control)


@router.get(
    "/indicators.csv",
    summary="Indicators of Integration as CSV (one line per borough, quarter and indicator)",
    response_class=Response,
    responses=CSV_RESPONSES,
    dependencies=[only_params()],
)
async def get_indicators_csv(call: Report, reader: Reader) -> Response:
    filters, control = call.prepare("indicators:csv")
    report = await integration_queries.indicators(reader, filters, today=_today(), control=control)
    suffix = "unrounded" if control is None else "published"
    return csv_download(indicators_csv(report), f"commonground-indicators-{suffix}.csv")


@router.get(
    "/esol-comparison",
    response_model=EsolComparisonReport,
    summary="ESOL learners with and without a cross-background match, stratified (not causal)",
    dependencies=[only_params()],
)
async def get_esol_comparison(call: Report, reader: Reader) -> dict[str, Any]:
    filters, control = call.prepare("esol-comparison")
    return await integration_queries.esol_comparison(reader, filters, control=control)
