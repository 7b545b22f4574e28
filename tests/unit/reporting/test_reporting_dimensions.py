"""Report dimensions are declared once (services/reporting/domain/dimensions.py) and the
rest follows from the declaration. These tests fail when a declared dimension lacks what
it needs (stored in the aggregates it reads, rows with labels, a filter's parameter), and
show a dimension added in one place reaching the breakdown, its columns and the CSV."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from typing import Any, get_args

import pytest
from fastapi import FastAPI, Response

from services.reporting.domain import dimensions
from services.reporting.domain.dimensions import (
    BREAKDOWNS,
    DIMENSIONS,
    FILTERED,
    Dimension,
    Filters,
    categories,
    filter_codes,
)
from services.reporting.domain.integration.indicator_definitions import PROGRAMME_GROUPS
from services.reporting.domain.projection import AGGREGATES
from services.reporting.domain.qar import QarBy
from services.reporting.domain.reports import breakdown_csv
from services.reporting.entrypoints import http
from services.reporting.repository import aggregate_match
from services.reporting.schemas import BreakdownReport, FiltersEcho, QarFiltersEcho
from services.reporting.use_cases import queries
from shared.auth import Principal, Role
from shared.contracts.reference import (
    COMBINED_AUTHORITY_NAMES,
    CombinedAuthority,
    Level,
    Programme,
)
from tests.factories.reporting import MANCHESTER, Pair, accepted, opted_in
from tests.security.seeded_population import InMemoryReportReader

ANALYST = Principal(principal_id="analyst", name="Analyst", role=Role.ANALYST)
EVERYWHERE = Filters(
    combined_authorities=tuple(ca.value for ca in CombinedAuthority),
    month_from="2025-01",
    month_to="2025-03",
)


def openapi() -> dict[str, Any]:
    app = FastAPI()
    app.include_router(http.router)
    return app.openapi()


def query_parameters(doc: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    parameters = doc["paths"][path]["get"]["parameters"]
    return {p["name"]: p["schema"] for p in parameters if p["in"] == "query"}


@pytest.mark.parametrize("dimension", DIMENSIONS.values(), ids=list(DIMENSIONS))
def test_every_dimension_is_stored_in_the_aggregates_a_breakdown_reads(
    dimension: Dimension,
) -> None:
    for aggregate in (dimension.aggregate, *dimension.also):
        assert dimension.name in AGGREGATES[aggregate].dims, aggregate


@pytest.mark.parametrize("name", BREAKDOWNS)
def test_every_dimension_lists_labelled_rows(name: str) -> None:
    rows = categories(name, EVERYWHERE, present=["2025-02"])
    codes = [code for code, _ in rows]
    assert rows and len(set(codes)) == len(codes)
    assert all(isinstance(label, str) and label.strip() for _, label in rows)


def test_the_api_offers_every_dimension_in_by_and_nothing_else() -> None:
    doc = openapi()
    for path in ("/v1/reports/breakdown", "/v1/reports/export.csv"):
        assert query_parameters(doc, path)["by"]["enum"] == list(DIMENSIONS)
    assert BreakdownReport.model_json_schema()["properties"]["by"]["enum"] == list(DIMENSIONS)


def test_qar_rows_other_than_years_are_dimensions_stored_in_the_qar_aggregate() -> None:
    for by in get_args(QarBy):
        if by != "year":
            assert by in DIMENSIONS and by in AGGREGATES["qar"].dims


@pytest.mark.parametrize("name", FILTERED)
def test_a_filtered_dimension_has_its_parameter_and_narrows_rows_echo_and_query(
    name: str,
) -> None:
    # Its query parameter, request field, Filters field and echoed field (hand-written:
    # FastAPI reads parameters from a signature), and the unknown-parameter check.
    assert name in query_parameters(openapi(), "/v1/reports/breakdown")
    assert name in http.FILTER_PARAMS
    assert {name} <= {f.name for f in dataclasses.fields(queries.ReportRequest)}
    assert {name} <= set(FiltersEcho.model_fields) & set(QarFiltersEcho.model_fields)

    code, label = categories(name, EVERYWHERE, present=[])[-1]
    chosen: dict[str, Any] = {name: code}
    filters, _ = queries.resolve(ANALYST, queries.ReportRequest(**chosen))
    assert filters.selected() == {name: code}
    assert filters.echo()[name] == code
    assert categories(name, filters, present=[]) == [(code, label)]
    assert aggregate_match("outcomes", filters)[name] == code
    assert name not in aggregate_match("matching", filters)  # matches have no such field


def test_programmes_and_levels_come_from_the_contract_enums_with_their_names() -> None:
    assert categories("programme", EVERYWHERE, []) == [(p.value, p.label) for p in Programme]
    assert categories("level", EVERYWHERE, [])[:-1] == [(lv.value, lv.label) for lv in Level]
    assert filter_codes("level")[-1] == "none"
    assert http.LEVEL_PATTERN == "^(" + "|".join(filter_codes("level")) + ")$"


def test_meta_lists_every_programme_and_level_with_its_name() -> None:
    meta = asyncio.run(http.get_meta(Response(), ANALYST))
    assert meta["programmes"] == [{"code": p.value, "name": p.label} for p in Programme]
    assert [lv["code"] for lv in meta["levels"]] == filter_codes("level")
    assert meta["levels"][0] == {"code": Level.PRE_ENTRY.value, "name": "Pre-entry"}


def test_every_programme_is_in_exactly_one_integration_programme_group() -> None:
    grouped = [p for programmes in PROGRAMME_GROUPS.values() for p in programmes]
    assert sorted(grouped) == sorted(p.value for p in Programme)


# ---------------------------------------------------------------------------------------
# Worked example: a breakdown by combined authority, declared in one place.


def by_combined_authority(filters: Filters, present: object) -> list[tuple[str, str]]:
    return [
        (ca, COMBINED_AUTHORITY_NAMES[CombinedAuthority(ca)]) for ca in filters.combined_authorities
    ]


def test_a_dimension_declared_in_one_place_reaches_the_breakdown_its_columns_and_the_csv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In the code this is one more entry in DIMENSIONS, which also puts it in the API's
    # ``by`` (test above); both aggregates read are keyed by combined authority already.
    monkeypatch.setitem(
        dimensions.DIMENSIONS,
        "combined_authority",
        Dimension("combined_authority", by_combined_authority, also=("matching",)),
    )
    liverpool = "E08000012"
    manchester = [accepted(la=MANCHESTER) for _ in range(2)]
    pair = Pair(manchester[0])
    events = [*manchester, accepted(la=liverpool), opted_in(manchester[0]), pair.confirmed(3)]
    reader = InMemoryReportReader(events)
    filters, _ = queries.resolve(ANALYST, queries.ReportRequest())

    table = asyncio.run(queries.breakdown(reader, "combined_authority", filters, control=None))

    rows = {row["code"]: row for row in table["rows"]}
    gm, lcr = CombinedAuthority.GREATER_MANCHESTER, CombinedAuthority.LIVERPOOL_CITY_REGION
    assert rows[gm]["label"] == "Greater Manchester"
    assert (rows[gm]["values"]["started"], rows[lcr]["values"]["started"]) == (2, 1)
    assert rows[gm]["values"]["matches_confirmed"] == 1  # from ``also``
    assert table["total"]["values"]["started"] == 3
    parsed = list(csv.DictReader(io.StringIO(breakdown_csv(table))))
    assert {r["combined_authority"]: r["started"] for r in parsed}[gm] == "2"
    assert parsed[-1]["combined_authority"] == "total"
