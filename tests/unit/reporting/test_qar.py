"""QAR measures (issue 15): hybrid end year, qualifying-period exclusions, breaks with no
restart as withdrawals, rates from published counts."""

from __future__ import annotations

from datetime import date

from services.reporting.domain.disclosure import CellKeyMethod
from services.reporting.domain.projection import EnrolmentState, enrolment_contributions
from services.reporting.domain.qar import (
    QarAim,
    academic_year,
    build_qar,
    qar_contribution,
    qualifying_days,
)

START, PLANNED = date(2025, 9, 8), date(2026, 6, 26)


def test_hybrid_end_year_is_the_later_of_planned_and_actual_end() -> None:
    early = qar_contribution(QarAim(2, START, PLANNED, ended_on=date(2026, 3, 1), outcome=1))
    late = qar_contribution(QarAim(2, START, PLANNED, ended_on=date(2026, 9, 1), outcome=1))
    assert early == ("2025/26", {"qar_leavers": 1, "qar_completers": 1, "qar_achievers": 1})
    assert late is not None and late[0] == "2026/27"
    assert academic_year(date(2026, 7, 31)) == "2025/26"
    assert academic_year(date(2026, 8, 1)) == "2026/27"


def test_withdrawals_inside_the_qualifying_period_are_excluded() -> None:
    assert qualifying_days(START, PLANNED) == 42
    assert qualifying_days(START, START.replace(day=30)) == 14
    assert qualifying_days(START, START) == 1
    inside = qar_contribution(QarAim(3, START, PLANNED, ended_on=date(2025, 10, 18)))  # day 41
    after = qar_contribution(QarAim(3, START, PLANNED, ended_on=date(2025, 10, 19)))  # day 42
    assert inside == ("2025/26", {"qar_excluded_qualifying": 1})
    assert after == ("2025/26", {"qar_leavers": 1, "qar_withdrawn": 1})


def test_a_break_with_no_restart_is_a_withdrawal_and_continuing_aims_are_not_leavers() -> None:
    on_break = qar_contribution(QarAim(6, START, PLANNED, break_on=date(2026, 1, 10)))
    assert on_break == (
        "2025/26",
        {"qar_leavers": 1, "qar_withdrawn": 1, "qar_breaks_as_withdrawn": 1},
    )
    assert qar_contribution(QarAim(1, START, PLANNED)) is None
    assert qar_contribution(QarAim(2, None, None, ended_on=date(2026, 1, 1))) is None


def test_the_projection_feeds_the_qar_aggregate_with_record_keys() -> None:
    state = EnrolmentState(
        enrolment_id="enr_1",
        learner="lp_1",
        provider_ukprn="10012345",
        combined_authority="E47000001",
        local_authority="E08000004",
        programme="esol",
        level="entry_1",
        accepted=True,
        start_month="2025-09",
        status=2,
        outcome=1,
        start_date=START.isoformat(),
        planned_end_date=PLANNED.isoformat(),
        ended_on="2026-06-20",
    )
    qar = {k: c for k, c in enrolment_contributions(state, False, False) if k[0] == "qar"}
    [(key, counts)] = qar.items()
    assert key == ("qar", ("E47000001", "E08000004", "esol", "entry_1", "2025/26"))
    assert counts["qar_achievers"] == 1 and counts["ck_qar_achievers"] == counts["ck_qar_leavers"]


def test_published_rates_come_from_published_counts_only() -> None:
    sums = {
        "2025/26": {
            "qar_leavers": 200,
            "qar_completers": 170,
            "qar_achievers": 150,
            "ck_qar_leavers": 9001,
            "ck_qar_completers": 777,
            "ck_qar_achievers": 31,
        },
        "2026/27": {"qar_leavers": 4, "qar_completers": 4, "qar_achievers": 3},
    }
    rows = [("2025/26", "2025/26"), ("2026/27", "2026/27")]
    exact = build_qar("year", rows, sums, filters={}, disclosure={}, control=None)
    assert exact["rows"][0]["rates"]["achievement_rate"] == 0.75
    method = CellKeyMethod(secret=b"qar-unit-test-secret")
    shown = build_qar("year", rows, sums, filters={}, disclosure={}, control=method)
    first, small = shown["rows"]
    leavers, achievers = first["values"]["leavers"], first["values"]["achievers"]
    assert isinstance(leavers, int) and isinstance(achievers, int)
    assert first["rates"]["achievement_rate"] == round(achievers / leavers, 3)
    assert small["values"]["leavers"] == "<10" and small["rates"]["achievement_rate"] is None
