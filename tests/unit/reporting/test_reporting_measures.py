"""Report measures from summed aggregates: rates, ESOL progression, matched vs unmatched,
matching reach with every borough listed, median wait, CSV."""

from __future__ import annotations

import csv
import io

from services.reporting.domain.dimensions import Filters, categories, months_between
from services.reporting.domain.disclosure import LegacyMethod
from services.reporting.domain.projection import full_counts
from services.reporting.domain.reports import (
    BreakdownInputs,
    SummaryInputs,
    breakdown_csv,
    build_breakdown,
    build_summary,
)
from shared.contracts.reference import LOCAL_AUTHORITIES, CombinedAuthority
from tests.factories.reporting import GM, MANCHESTER, OLDHAM, WIGAN

ALL_GM = Filters(combined_authorities=(GM.value,))


def outcomes(**counts: int) -> dict[str, int]:
    return full_counts("outcomes", counts)


def summary_inputs() -> SummaryInputs:
    everything = outcomes(
        started=120,
        withdrawn=20,
        completed=80,
        achieved=60,
        esol_assessed=50,
        esol_progressed=31,
        withdrawn_reason_3=12,
        withdrawn_reason_7=6,
        withdrawn_reason_97=2,
    )
    esol = outcomes(
        started=70,
        withdrawn=10,
        completed=50,
        achieved=40,
        esol_assessed=50,
        esol_progressed=31,
        matched_started=30,
        matched_withdrawn=2,
        matched_completed=25,
        matched_achieved=22,
        matched_esol_assessed=20,
        matched_esol_progressed=15,
    )
    return SummaryInputs(
        outcomes=everything,
        esol=esol,
        matching=full_counts(
            "matching", {"proposed": 50, "confirmed": 41, "cross_background": 29, "declined": 9}
        ),
        participants=full_counts("participants", {"opted_in": 60, "waiting": 19, "matched": 41}),
        wait_days=[3.0, 10.0, 12.0, 7.5, 30.0, 4.0],
    )


def test_summary_measures_published_with_disclosure_control() -> None:
    s = build_summary(summary_inputs(), ALL_GM, control=LegacyMethod())
    e = s["enrolments"]
    assert (e["started"], e["stayed"], e["withdrawn"], e["completed"], e["achieved"]) == (
        120,
        100,
        20,
        80,
        60,
    )
    assert e["completion_rate"] == round(80 / 100, 3)  # completed / leavers
    assert e["achievement_rate"] == 0.6
    reasons = {r["code"]: r["count"] for r in s["withdrawal_reasons"]}
    # 2 is primary-suppressed; 6 (the next smallest) is withheld too, else 20-12-6 = 2.
    assert (reasons[97], reasons[7], reasons[3], reasons[98]) == ("<5", "c", 10, 0)
    assert s["esol"]["all"]["progression_rate"] == round(31 / 50, 3)
    matched, unmatched = s["esol"]["matched"], s["esol"]["unmatched"]
    assert matched["started"] == 30 and unmatched["started"] == 40
    assert matched["achievement_rate"] == round(22 / 27, 3)
    assert unmatched["achievement_rate"] == round(18 / 33, 3)
    assert matched["withdrawn"] == "<5" and unmatched["withdrawn"] == "c"
    m = s["matching"]
    assert m["cross_background_share"] == round(29 / 41, 3)
    assert m["median_wait_days"] == 8.8
    assert s["waiting_list"] == {"opted_in": 60, "waiting": 20, "matched": 40}
    assert s["disclosure"]["mode"] == "rounded"


def test_analysts_can_see_unrounded_figures() -> None:
    s = build_summary(summary_inputs(), ALL_GM, control=None)
    assert s["waiting_list"]["waiting"] == 19
    assert {r["code"]: r["count"] for r in s["withdrawal_reasons"]}[97] == 2
    assert s["disclosure"]["mode"] == "unrounded"


def test_median_wait_is_withheld_below_five_matches() -> None:
    inputs = SummaryInputs(
        outcomes={}, esol={}, matching={}, participants={}, wait_days=[1.0, 2.0, 3.0]
    )
    assert (
        build_summary(inputs, ALL_GM, control=LegacyMethod())["matching"]["median_wait_days"]
        is None
    )
    assert build_summary(inputs, ALL_GM, control=None)["matching"]["median_wait_days"] == 2.0


def test_breakdown_by_local_authority_lists_every_borough() -> None:
    rows = categories("local_authority", ALL_GM, present=[])
    assert [code for code, _ in rows] == sorted(
        LOCAL_AUTHORITIES[CombinedAuthority.GREATER_MANCHESTER],
        key=lambda c: LOCAL_AUTHORITIES[CombinedAuthority.GREATER_MANCHESTER][c],
    )
    inputs = BreakdownInputs(
        outcomes={
            MANCHESTER: outcomes(started=40, withdrawn=3, completed=30, achieved=21),
            OLDHAM: outcomes(started=12, withdrawn=1, completed=9, achieved=8),
        },
        matching={MANCHESTER: full_counts("matching", {"confirmed": 9, "cross_background": 6})},
        participants={WIGAN: full_counts("participants", {"opted_in": 7, "waiting": 7})},
    )
    table = build_breakdown("local_authority", rows, inputs, ALL_GM, control=LegacyMethod())
    by_code = {r["code"]: r for r in table["rows"]}
    assert len(by_code) == 10
    assert by_code[WIGAN]["values"]["started"] == 0  # true zero, shown as 0
    assert by_code[WIGAN]["values"]["waiting"] == 5
    assert by_code[MANCHESTER]["values"]["withdrawn"] == "<5"
    assert by_code[OLDHAM]["values"]["withdrawn"] == "<5"
    # started = stayed + withdrawn in each row: with withdrawn hidden, stayed is hidden too.
    assert by_code[MANCHESTER]["values"]["stayed"] == "c"
    assert table["total"]["values"]["started"] == 50
    assert by_code[MANCHESTER]["rates"]["completion_rate"] is None  # would reveal withdrawn=3


def test_breakdown_by_month_spans_the_requested_range() -> None:
    filters = Filters(combined_authorities=(GM.value,), month_from="2024-11", month_to="2025-02")
    rows = categories("month", filters, present=["2025-01"])
    assert [code for code, _ in rows] == ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert months_between("2024-12", "2024-12") == ["2024-12"]


def test_csv_export_keeps_suppression_markers() -> None:
    rows = categories("programme", ALL_GM, present=[])
    inputs = BreakdownInputs(outcomes={"esol": outcomes(started=33, withdrawn=2, completed=20)})
    text = breakdown_csv(build_breakdown("programme", rows, inputs, ALL_GM, control=LegacyMethod()))
    parsed = list(csv.DictReader(io.StringIO(text)))
    esol = next(r for r in parsed if r["programme"] == "esol")
    assert (esol["started"], esol["withdrawn"], esol["stayed"]) == ("35", "<5", "c")
    assert parsed[-1]["programme"] == "total"
    assert len(parsed) == 7  # six programmes and the total


def test_an_esol_only_summary_publishes_each_number_one_way() -> None:
    esol = outcomes(
        started=40, withdrawn=3, completed=30, achieved=20, matched_started=9, matched_withdrawn=1
    )
    filters = Filters(combined_authorities=(GM.value,), programme="esol")
    s = build_summary(
        SummaryInputs(outcomes=esol, esol=esol, matching={}, participants={}),
        filters,
        control=LegacyMethod(),
    )
    # The headline and the ESOL "all" row are one set of cells: suppressed alike.
    for name in ("started", "withdrawn", "completed", "achieved"):
        assert s["enrolments"][name] == s["esol"]["all"][name]
    assert s["enrolments"]["withdrawn"] == "<5"
    assert s["esol"]["matched"]["withdrawn"] == "<5"
    assert s["esol"]["unmatched"]["withdrawn"] == "<5"
