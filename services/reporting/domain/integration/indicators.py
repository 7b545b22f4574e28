"""The Indicators of Integration per borough and quarter (and for all boroughs in scope):
the cells each indicator is computed from, what is published of them, and the CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.reporting.domain.dimensions import Filters, boroughs, month_range
from services.reporting.domain.disclosure import (
    Cell,
    CellId,
    DisclosureMethod,
    Displayed,
    Published,
    publish,
    sum_cells,
)
from services.reporting.domain.integration.bridges import BRIDGE_COUNTERS
from services.reporting.domain.integration.cells import (
    TOTAL,
    add_counts,
    borough_cells,
    rate_of,
)
from services.reporting.domain.integration.indicator_definitions import (
    DOMAIN_LABELS,
    FRAMEWORK,
    INDICATORS,
    PROGRAMME_GROUPS,
    UNMEASURED_DOMAINS,
    Indicator,
)
from services.reporting.domain.integration.periods import (
    months_by_quarter,
    observable,
    quarter_label,
    quarter_of,
)
from services.reporting.domain.integration_facts import BRIDGE_MARKS
from services.reporting.domain.projection import Counts
from services.reporting.domain.reports import cell, disclosure_note, median_wait

OUTCOME_MEASURES = ("started", "achieved", "leavers", "esol_assessed", "esol_progressed")
"""The measures of every programme group, per borough and quarter."""

BRIDGE_MARK_OF: Mapping[str, str] = {
    "bridges_active_6w_share": "6w",
    "bridges_active_6m_share": "6m",
}
"""The indicators observable only once every match of the quarter has reached a mark."""

Quarters = Mapping[str, Sequence[str]]
"""Calendar quarter → its months in the report."""


@dataclass(frozen=True)
class IndicatorInputs:
    outcomes: Mapping[tuple[str, str, str], Counts]
    """(local authority, programme, month) → outcome counters."""
    bridges: Mapping[tuple[str, str], Counts]
    """(local authority, month) → bridge counters."""
    progress_days: Sequence[tuple[str, str, float]] = field(default_factory=tuple)
    """(local authority, start month, days to first progression) per ESOL enrolment."""


def build_indicators(
    inputs: IndicatorInputs,
    filters: Filters,
    *,
    today: date,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """Every indicator per borough and quarter (and for all boroughs in scope)."""
    present = [m for _, _, m in inputs.outcomes] + [m for _, m in inputs.bridges]
    months = month_range(filters, present)
    quarters = months_by_quarter(months)
    las = boroughs(filters)
    values = _indicator_cells(inputs, quarters, las)
    published = _PublishedIndicators(
        publish(values, [], control),
        quarters,
        _progress_days_by_quarter(inputs.progress_days, months),
        today,
    )
    return {
        "framework": dict(FRAMEWORK),
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "as_of": today.isoformat(),
        "quarters": [
            {"quarter": q, "label": quarter_label(q), "months": ms} for q, ms in quarters.items()
        ],
        "indicators": [_indicator_meta(ind) for ind in INDICATORS],
        "rows": [published.row(la, label, q) for q in quarters for la, label in las],
        "totals": [published.row(TOTAL, "All boroughs in scope", q) for q in quarters],
        "unmeasured_domains": [dict(d) for d in UNMEASURED_DOMAINS],
    }


def _indicator_meta(ind: Indicator) -> dict[str, Any]:
    return {
        "key": ind.key,
        "domain": ind.domain,
        "domain_label": DOMAIN_LABELS[ind.domain],
        "name": ind.name,
        "kind": ind.kind,
        "definition": ind.definition,
        "source_events": list(ind.source_events),
    }


# ---------------------------------------------------------------------------------------
# The cells: per borough, quarter and "group.measure", with a total over every borough.


def _indicator_cells(
    inputs: IndicatorInputs, quarters: Quarters, las: Sequence[tuple[str, str]]
) -> dict[CellId, Cell]:
    values: dict[CellId, Cell] = {}
    for q, q_months in quarters.items():
        values.update(_programme_cells(inputs.outcomes, q, q_months, las))
        values.update(_bridge_cells(inputs.bridges, q, q_months, las))
    return values


def _programme_cells(
    outcomes: Mapping[tuple[str, str, str], Counts],
    q: str,
    q_months: Sequence[str],
    las: Sequence[tuple[str, str]],
) -> dict[CellId, Cell]:
    """``{group}.{measure}`` of every programme group over the quarter's months."""
    values: dict[CellId, Cell] = {}
    for group, programmes in PROGRAMME_GROUPS.items():
        per_la = [
            _outcome_cells(
                add_counts(outcomes.get((la, prog, m), {}) for prog in programmes for m in q_months)
            )
            for la, _ in las
        ]
        for measure in OUTCOME_MEASURES:
            per = [cells[measure] for cells in per_la]
            values.update(borough_cells(las, q, f"{group}.{measure}", per))
    return values


def _outcome_cells(counts: Counts) -> dict[str, Cell]:
    completed, withdrawn = cell(counts, "completed"), cell(counts, "withdrawn")
    return {
        "started": cell(counts, "started"),
        "achieved": cell(counts, "achieved"),
        "leavers": completed + withdrawn,
        "esol_assessed": cell(counts, "esol_assessed"),
        "esol_progressed": cell(counts, "esol_progressed"),
    }


def _bridge_cells(
    bridges: Mapping[tuple[str, str], Counts],
    q: str,
    q_months: Sequence[str],
    las: Sequence[tuple[str, str]],
) -> dict[CellId, Cell]:
    """``bridges.{counter}`` over the quarter's months (by month of confirmation)."""
    values: dict[CellId, Cell] = {}
    for counter in BRIDGE_COUNTERS:
        per = [
            sum_cells(cell(bridges.get((la, m), {}), counter) for m in q_months) for la, _ in las
        ]
        values.update(borough_cells(las, q, f"bridges.{counter}", per))
    return values


def _progress_days_by_quarter(
    progress_days: Sequence[tuple[str, str, float]], months: Sequence[str]
) -> dict[tuple[str, str], list[float]]:
    """Days to first progression per (borough, start quarter), and per (TOTAL, quarter)."""
    progress: dict[tuple[str, str], list[float]] = {}
    for la, month, days in progress_days:
        if month in months:
            progress.setdefault((la, quarter_of(month)), []).append(days)
            progress.setdefault((TOTAL, quarter_of(month)), []).append(days)
    return progress


# ---------------------------------------------------------------------------------------
# What is published of each indicator.


@dataclass(frozen=True)
class _PublishedIndicators:
    p: Published
    quarters: Quarters
    progress: Mapping[tuple[str, str], Sequence[float]]
    today: date

    def row(self, la: str, label: str, q: str) -> dict[str, Any]:
        return {
            "local_authority": la,
            "label": label,
            "quarter": q,
            "quarter_label": quarter_label(q),
            "months": self.quarters[q],
            "values": {ind.key: self.value(ind, la, q) for ind in INDICATORS},
        }

    def value(self, ind: Indicator, la: str, q: str) -> dict[str, Any]:
        if not self.mark_reached(ind, q):
            return {
                "value": None,
                "numerator": None,
                "denominator": None,
                "status": "not_yet_observable",
            }
        num = (la, q, ind.numerator) if ind.numerator else None
        den = (la, q, ind.denominator) if ind.denominator else None
        value = self.figure(ind, num, den, self.progress.get((la, q), []))
        return {
            "value": value,
            "numerator": self.p.display(num) if num is not None else None,
            "denominator": self.p.display(den) if den is not None else None,
            "status": "published" if _is_shown(ind, value) else "withheld",
        }

    def mark_reached(self, ind: Indicator, q: str) -> bool:
        """False for a bridge indicator whose mark not every match of ``q`` has reached."""
        mark = BRIDGE_MARK_OF.get(ind.key)
        if mark is None:
            return True
        return observable(self.quarters[q][-1], BRIDGE_MARKS[mark], self.today)

    def figure(
        self, ind: Indicator, num: CellId | None, den: CellId | None, days: Sequence[float]
    ) -> Displayed | float | None:
        """The count, rate or median days of ``ind`` (``None``: withheld)."""
        assert num is not None
        if ind.kind == "count":
            return self.p.display(num)
        if ind.kind == "rate":
            assert den is not None
            return rate_of(self.p, num, den)
        return median_wait(days, self.p, num)


def _is_shown(ind: Indicator, value: Displayed | float | None) -> bool:
    """A count is shown when published as a number; a rate or median when not None."""
    if ind.kind == "count":
        return isinstance(value, int)
    return value is not None


# ---------------------------------------------------------------------------------------
# CSV


INDICATORS_CSV_HEADER = (
    "local_authority",
    "label",
    "quarter",
    "domain",
    "indicator",
    "kind",
    "value",
    "numerator",
    "denominator",
    "status",
)


def indicators_csv(report: Mapping[str, Any]) -> str:
    """One line per borough, quarter and indicator (long format), totals last."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    meta = {i["key"]: i for i in report["indicators"]}
    writer.writerow(list(INDICATORS_CSV_HEADER))
    for row in [*report["rows"], *report["totals"]]:
        for key, v in row["values"].items():
            writer.writerow(
                [
                    row["local_authority"],
                    row["label"],
                    row["quarter"],
                    meta[key]["domain"],
                    key,
                    meta[key]["kind"],
                    *(_blank_if_none(v[f]) for f in ("value", "numerator", "denominator")),
                    v["status"],
                ]
            )
    return out.getvalue()


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value
