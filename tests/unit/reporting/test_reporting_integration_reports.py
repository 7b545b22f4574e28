"""The integration reports (issue 16) built from events projected in memory: exact in
unrounded mode, disclosure-controlled in rounded mode (pure, no database)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.disclosure import CellKeyMethod
from services.reporting.domain.integration.esol_comparison import (
    Stratum,
    stratified_difference,
    wilson,
)
from services.reporting.domain.integration.indicator_definitions import INDICATORS
from services.reporting.domain.integration.indicators import indicators_csv
from services.reporting.domain.integration.periods import quarter_label, quarter_of
from services.reporting.use_cases import integration_queries
from tests.factories.reporting import (
    GM,
    MANCHESTER,
    OLDHAM,
)
from tests.factories.reporting_integration import InMemoryIntegrationReader, integration_scenario

JAN = date(1950, 1, 10)
LATER = date(2000, 1, 1)  # every mark reached
FILTERS = Filters(combined_authorities=(GM.value,), month_from="1950-01", month_to="1950-03")
MANCHESTER_ONLY = Filters(
    combined_authorities=(GM.value,),
    local_authority=MANCHESTER,
    month_from="1950-01",
    month_to="1950-03",
)
CELL_KEY = CellKeyMethod()


READER = InMemoryIntegrationReader(integration_scenario(1950))


def run(coro: Any) -> dict[str, Any]:
    result: dict[str, Any] = asyncio.run(coro)
    return result


def test_calendar_quarters() -> None:
    assert quarter_of("1950-01") == "1950-Q1" and quarter_of("1950-12") == "1950-Q4"
    assert quarter_label("1950-Q2") == "1950 Q2 (Apr-Jun)"


def test_wilson_interval_and_stratified_difference() -> None:
    assert wilson(5, 10) == (0.237, 0.763)
    assert wilson(0, 10) == (0.0, 0.278)
    assert wilson(3, 0) is None
    # One stratum: the weighted difference is that stratum's difference.
    one = stratified_difference([Stratum(2, 2, 1, 2)])
    assert one == {"estimate": 0.5, "ci_low": -0.193, "ci_high": 1.0}
    # Equal strata with opposite differences cancel out.
    assert stratified_difference([Stratum(8, 10, 4, 10), Stratum(4, 10, 8, 10)])["estimate"] == 0.0  # type: ignore[index]
    assert stratified_difference([Stratum(1, 1, 0, 0)]) is None


def test_bridges_by_borough_and_month_exact_unrounded() -> None:
    report = run(integration_queries.bridges(READER, FILTERS, today=LATER, control=None))
    rows = {(r["local_authority"], r["month"]): r for r in report["rows"]}
    assert len(report["rows"]) == 10 * 3  # every borough, every month
    jan = rows[(MANCHESTER, "1950-01")]
    assert (jan["confirmed"], jan["cross_background"]) == (3, 2)
    assert (jan["active_6w"], jan["share_active_6w"]) == (2, 1.0)
    assert (jan["active_6m"], jan["share_active_6m"]) == (1, 0.5)
    assert rows[(OLDHAM, "1950-01")]["confirmed"] == 0
    total_jan = report["totals"][0]
    assert total_jan["local_authority"] == "total" and total_jan["active_6m"] == 1
    assert report["marks"] == {"6w": 42, "6m": 182, "activity_window_days": 28}


def test_bridges_are_not_observable_before_every_match_reached_the_mark() -> None:
    report = run(integration_queries.bridges(READER, FILTERS, today=date(1950, 4, 1), control=None))
    jan = next(r for r in report["rows"] if r["local_authority"] == MANCHESTER)
    assert jan["observable_6w"] and jan["share_active_6w"] == 1.0  # 31 Jan + 42 days passed
    assert not jan["observable_6m"] and jan["active_6m"] is None and jan["share_active_6m"] is None


def test_bridges_rounded_withhold_small_counts_and_their_rates() -> None:
    report = run(integration_queries.bridges(READER, FILTERS, today=LATER, control=CELL_KEY))
    jan = next(r for r in report["rows"] if r["local_authority"] == MANCHESTER)
    assert jan["confirmed"] == jan["cross_background"] == jan["active_6w"] == "<10"
    assert jan["share_active_6w"] is None and report["disclosure"]["method"] == "cell_key"


@pytest.mark.parametrize(
    ("by", "code", "expected"),
    [
        ("sex", "F", (2, 0, 2, 0.0, 4.0)),  # waits of 3 and 5 days
        ("sex", "M", (1, 0, 1, 0.0, 3.0)),
        ("sex", "not_stated", (1, 1, 0, 1.0, None)),
        ("age_band", "25-34", (3, 1, 2, 0.333, 4.0)),
        ("age_band", "35-49", (1, 0, 1, 0.0, 3.0)),
        ("ethnic_group", "not_stated", (4, 1, 3, 0.25, 3.0)),
        ("local_authority", MANCHESTER, (4, 1, 3, 0.25, 3.0)),
    ],
)
def test_who_is_left_waiting_by_group(
    by: Any, code: str, expected: tuple[int, int, int, float, float | None]
) -> None:
    report = run(integration_queries.waiting(READER, by, FILTERS, control=None))
    row = next(r for r in report["rows"] if r["code"] == code)
    got = (
        row["opted_in"],
        row["waiting"],
        row["matched"],
        row["unmatched_rate"],
        row["median_wait_days"],
    )
    assert got == expected
    assert report["total"]["opted_in"] == 4


def test_waiting_rows_list_every_group_and_withhold_small_ones() -> None:
    report = run(integration_queries.waiting(READER, "ethnic_group", FILTERS, control=CELL_KEY))
    assert [r["code"] for r in report["rows"]] == [
        "asian",
        "black",
        "mixed",
        "white",
        "other",
        "not_stated",
    ]
    assert all(r["opted_in"] == "<10" and r["median_wait_days"] is None for r in report["rows"])


def values(report: dict[str, Any], la: str) -> dict[str, Any]:
    row = next(r for r in [*report["rows"], *report["totals"]] if r["local_authority"] == la)
    return {k: v["value"] for k, v in row["values"].items()}


def test_indicators_per_borough_and_quarter_exact_unrounded() -> None:
    report = run(integration_queries.indicators(READER, FILTERS, today=LATER, control=None))
    assert [q["quarter"] for q in report["quarters"]] == ["1950-Q1"]
    assert len(report["rows"]) == 10 and len(report["totals"]) == 1
    m = values(report, MANCHESTER)
    assert m == {
        "esol_starts": 5,
        "esol_achievement_rate": 0.5,  # 2 achieved of 4 leavers
        "esol_progression_rate": 1.0,  # 3 of 3 with a level recorded
        "esol_median_days_to_progress": 180.0,  # 60, 180, 180
        "adult_skills_starts": 1,
        "adult_skills_achievement_rate": 1.0,
        "digital_starts": 0,
        "digital_achievement_rate": None,
        "bridges_confirmed": 2,
        "bridges_share": 0.667,
        "bridges_active_6w_share": 1.0,
        "bridges_active_6m_share": 0.5,
    }
    o = values(report, OLDHAM)
    assert (o["digital_starts"], o["digital_achievement_rate"]) == (2, 0.5)
    assert values(report, "total")["esol_starts"] == 5
    row = next(r for r in report["rows"] if r["local_authority"] == MANCHESTER)
    assert row["values"]["esol_achievement_rate"] == {
        "value": 0.5,
        "numerator": 2,
        "denominator": 4,
        "status": "published",
    }
    described = {i["key"]: i for i in report["indicators"]}
    assert set(described) == {i.key for i in INDICATORS}
    assert described["bridges_active_6w_share"]["domain"] == "social_bridges"
    assert "MatchCheckInRecorded" in described["bridges_active_6w_share"]["source_events"]
    assert {i["domain"] for i in report["indicators"]} == {
        "language_and_communication",
        "education",
        "digital_skills",
        "social_bridges",
    }
    unmeasured = {d["domain"]: d for d in report["unmeasured_domains"]}
    assert unmeasured["work"]["status"] == "needs_data"
    assert any("EmpStat" in f for f in unmeasured["work"]["data_needed"])
    assert len(unmeasured) == 10  # 14 domains, 4 measured


def test_indicators_rounded_and_not_yet_observable() -> None:
    report = run(
        integration_queries.indicators(READER, FILTERS, today=date(1950, 5, 1), control=CELL_KEY)
    )
    row = next(r for r in report["rows"] if r["local_authority"] == MANCHESTER)
    v = row["values"]
    assert v["esol_starts"] == {
        "value": "<10",
        "numerator": "<10",
        "denominator": None,
        "status": "withheld",
    }
    assert v["esol_median_days_to_progress"]["value"] is None
    assert v["bridges_active_6w_share"]["status"] == "not_yet_observable"  # 31 Mar + 42 d
    assert v["bridges_active_6m_share"] == {
        "value": None,
        "numerator": None,
        "denominator": None,
        "status": "not_yet_observable",
    }
    lines = indicators_csv(report).splitlines()
    assert (
        lines[0]
        == "local_authority,label,quarter,domain,indicator,kind,value,numerator,denominator,status"
    )
    assert (
        f"{MANCHESTER},Manchester,1950-Q1,language_and_communication,esol_starts,count,<10,<10,,withheld"
        in lines
    )
    assert len(lines) == 1 + 11 * len(INDICATORS)


def test_esol_comparison_stratified_exact_unrounded() -> None:
    report = run(integration_queries.esol_comparison(READER, MANCHESTER_ONLY, control=None))
    retention, achievement = report["outcomes"]
    # Stratum (Manchester, Entry 1, 1950-Q1): cross-background matched e1, e2 (2 started,
    # 2 stayed, 2 achieved of 2 leavers); no match e4, e5 (2 started, 1 stayed, 0 of 1).
    # e3's match bridged nothing: in neither group.
    assert (retention["matched"]["x"], retention["matched"]["n"]) == (2, 2)
    assert (retention["unmatched"]["x"], retention["unmatched"]["n"]) == (1, 2)
    assert retention["unmatched"]["rate"] == 0.5
    assert (retention["unmatched"]["ci_low"], retention["unmatched"]["ci_high"]) == wilson(1, 2)
    assert retention["stratified_difference"] == {
        "estimate": 0.5,
        "ci_low": -0.193,
        "ci_high": 1.0,
        "strata_used": 1,
        "strata_with_both_groups": 1,
        "matched_in_strata": 2,
        "unmatched_in_strata": 2,
    }
    assert (
        retention["strata"][0]["quarter"] == "1950-Q1"
        and retention["strata"][0]["level"] == "entry_1"
    )
    assert achievement["stratified_difference"]["estimate"] == 1.0
    assert (achievement["unmatched"]["x"], achievement["unmatched"]["n"]) == (0, 1)
    assert "not an effect" in report["caveat"] and "cross-background" in report["groups"]["matched"]


def test_esol_comparison_rounded_uses_only_published_strata() -> None:
    report = run(integration_queries.esol_comparison(READER, MANCHESTER_ONLY, control=CELL_KEY))
    for outcome in report["outcomes"]:
        d = outcome["stratified_difference"]
        assert d["estimate"] is None and d["strata_used"] == 0
        assert d["strata_with_both_groups"] is None  # would tell zeros apart
        assert outcome["strata"] == [] and outcome["matched"]["rate"] is None
        assert outcome["matched"]["n"] == "<10" and outcome["matched"]["ci_low"] is None
