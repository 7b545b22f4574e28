"""Outcomes by the national Qualification Achievement Rates (QAR) definitions. Pure.

What the national QAR methodology (DfE, "Qualification achievement rates and minimum
standards" business rules) defines, as far as this platform's events allow
(docs/qar.md sets out every difference from the national release):

* **Cohort and year.** An aim counts in its **hybrid end year**: the academic year
  (1 August - 31 July) of the *later* of its planned end date and its actual end date.
  Only aims that have ended are in a year's cohort; an aim still continuing (even past
  its planned end) counts in the year it ends.
* **Leavers** = aims completed + aims withdrawn + aims on a break with no restart (a
  break that has not ended in a return is treated as a withdrawal, dated at the break).
* **Withdrawals inside the funding qualifying period are excluded** from the cohort: a
  learner in learning for fewer than 42 days on an aim planned to last 168 days or more,
  14 days for 14-167 days, 1 day for shorter aims (days in learning = end - start + 1).
* **Achievement rate** = achievers / leavers (achievers: completed with outcome 1);
  **retention rate** = completers / leavers; **pass rate** = achievers / completers.

In published (rounded) mode the rates are computed by the disclosure method from the
*published* perturbed counts (domain/disclosure.py), never from true counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from services.reporting.domain.disclosure import (
    Cell,
    DisclosureMethod,
    Line,
    publish,
    sum_cells,
)

# Counters of the ``qar`` aggregate (each with a ck_ key sum, domain/projection.py).
QAR_BASE_FIELDS: tuple[str, ...] = (
    "qar_leavers",
    "qar_completers",
    "qar_achievers",
    "qar_withdrawn",
    "qar_breaks_as_withdrawn",
    "qar_excluded_qualifying",
)
QAR_DIMS: tuple[str, ...] = ("combined_authority", "local_authority", "programme", "level", "year")
QarBy = Literal["year", "local_authority", "programme", "level"]

# Completion statuses as the read model stores them (ILR CompStatus).
CONTINUING, COMPLETED, WITHDRAWN, BREAK = 1, 2, 3, 6
ACHIEVED = 1


def academic_year(day: date) -> str:
    """The academic year (1 August - 31 July) holding ``day``, as ``2025/26``."""
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}/{str(first + 1)[2:]}"


def qualifying_days(start: date, planned_end: date) -> int:
    """Days in learning an aim needs before it counts (funding qualifying period)."""
    planned = (planned_end - start).days + 1
    if planned >= 168:
        return 42
    if planned >= 14:
        return 14
    return 1


@dataclass(frozen=True)
class QarAim:
    """What QAR needs of one enrolment (from the reporting read model's state)."""

    status: int
    start: date | None
    planned_end: date | None
    ended_on: date | None = None  # completion or withdrawal date
    break_on: date | None = None  # start of a break with no return yet
    outcome: int | None = None


def qar_contribution(aim: QarAim) -> tuple[str, dict[str, int]] | None:
    """(hybrid end year, counters) of an aim in a QAR cohort, or None (not a leaver yet,
    or dates unknown: enrolments projected before issue 15 until a rebuild)."""
    if aim.start is None or aim.planned_end is None:
        return None
    if aim.status == COMPLETED:
        end = aim.ended_on
    elif aim.status == WITHDRAWN:
        end = aim.ended_on
    elif aim.status == BREAK:
        end = aim.break_on
    else:
        return None
    if end is None:
        return None
    year = academic_year(max(aim.planned_end, end))
    if aim.status == COMPLETED:
        counts = {"qar_leavers": 1, "qar_completers": 1}
        if aim.outcome == ACHIEVED:
            counts["qar_achievers"] = 1
        return year, counts
    if (end - aim.start).days + 1 < qualifying_days(aim.start, aim.planned_end):
        return year, {"qar_excluded_qualifying": 1}
    counts = {"qar_leavers": 1, "qar_withdrawn": 1}
    if aim.status == BREAK:
        counts["qar_breaks_as_withdrawn"] = 1
    return year, counts


# ---------------------------------------------------------------------------------------
# The report.

QAR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("leavers", "Leavers (QAR cohort)"),
    ("completers", "Completers"),
    ("achievers", "Achievers"),
    ("withdrawn", "Withdrawn (incl. breaks with no restart)"),
    ("breaks_as_withdrawn", "Breaks with no restart (counted as withdrawn)"),
    ("excluded_qualifying", "Excluded: withdrew inside the qualifying period"),
)
QAR_RATES: tuple[tuple[str, str], ...] = (
    ("achievement_rate", "Achievement rate (achievers / leavers)"),
    ("retention_rate", "Retention rate (completers / leavers)"),
    ("pass_rate", "Pass rate (achievers / completers)"),
)
TOTAL = "__total__"


def _cell(counts: Mapping[str, int], name: str) -> Cell:
    return Cell(int(counts.get(name, 0)), int(counts.get("ck_" + name, 0)))


def build_qar(
    by: QarBy,
    rows: Sequence[tuple[str, str]],
    sums: Mapping[str, Mapping[str, int]],
    *,
    filters: Mapping[str, Any],
    disclosure: Mapping[str, Any],
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """One row per category (``rows``: code, label) and a total, each with the QAR
    counts and rates; ``control`` is the disclosure method (None: unrounded)."""
    keys = [k for k, _ in QAR_COLUMNS]
    codes = [code for code, _ in rows]
    per_row = {code: {k: _cell(sums.get(code, {}), f"qar_{k}") for k in keys} for code in codes}
    per_row[TOTAL] = {k: sum_cells(per_row[c][k] for c in codes) for k in keys}
    values = {(code, k): per_row[code][k] for code in (*codes, TOTAL) for k in keys}
    lines = [Line((TOTAL, k), tuple((c, k) for c in codes)) for k in keys]
    p = publish(values, lines, control)

    def row_out(code: str, label: str) -> dict[str, Any]:
        return {
            "code": "total" if code == TOTAL else code,
            "label": label,
            "values": {k: p.display((code, k)) for k in keys},
            "rates": {
                "achievement_rate": p.rate((code, "achievers"), ((code, "leavers"),)),
                "retention_rate": p.rate((code, "completers"), ((code, "leavers"),)),
                "pass_rate": p.rate((code, "achievers"), ((code, "completers"),)),
            },
        }

    return {
        "by": by,
        "filters": dict(filters),
        "disclosure": dict(disclosure),
        "definitions": "docs/qar.md",
        "columns": [{"key": k, "label": label} for k, label in QAR_COLUMNS],
        "rate_columns": [{"key": k, "label": label} for k, label in QAR_RATES],
        "rows": [row_out(code, label) for code, label in rows],
        "total": row_out(TOTAL, "Total"),
    }
