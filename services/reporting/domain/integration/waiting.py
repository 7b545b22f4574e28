"""Who is left waiting, by age band, sex, ethnic group or borough: opted in, still
waiting, matched, the unmatched rate and the median wait to a first match."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from services.reporting.domain.dimensions import ETHNIC_GROUP_LABELS, Filters, boroughs
from services.reporting.domain.disclosure import (
    Cell,
    CellId,
    DisclosureMethod,
    Published,
    publish,
    sum_cells,
)
from services.reporting.domain.integration.cells import TOTAL, rate_of
from services.reporting.domain.projection import NOT_STATED, Counts
from services.reporting.domain.reports import cell, disclosure_note, median_wait
from shared.contracts.reference import AgeBand, Sex

WaitingBy = Literal["age_band", "sex", "ethnic_group", "local_authority"]
WAITING_BY: tuple[WaitingBy, ...] = ("age_band", "sex", "ethnic_group", "local_authority")
SEX_LABELS: Mapping[str, str] = {Sex.FEMALE: "Female", Sex.MALE: "Male", NOT_STATED: "Not stated"}
WAITING_COUNTERS = ("opted_in", "waiting", "matched")


def waiting_categories(by: WaitingBy, filters: Filters) -> list[tuple[str, str]]:
    if by == "age_band":
        return [(a.value, a.value) for a in AgeBand] + [(NOT_STATED, "Not stated")]
    if by == "sex":
        return list(SEX_LABELS.items())
    if by == "ethnic_group":
        return list(ETHNIC_GROUP_LABELS.items())
    return boroughs(filters)


def build_waiting(
    by: WaitingBy,
    sums: Mapping[str, Counts],
    waits: Mapping[str, Sequence[float]],
    filters: Filters,
    *,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """Opted in, still waiting, matched, unmatched rate and median wait per group."""
    rows = waiting_categories(by, filters)
    values: dict[CellId, Cell] = {}
    for code, _ in rows:
        for name in WAITING_COUNTERS:
            values[(code, name)] = cell(sums.get(code, {}), name)
    for name in WAITING_COUNTERS:
        values[(TOTAL, name)] = sum_cells(values[(code, name)] for code, _ in rows)
    all_waits = [w for code, _ in rows for w in waits.get(code, ())]
    p = publish(values, [], control)
    return {
        "by": by,
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "rows": [_waiting_row(p, code, label, waits.get(code, ())) for code, label in rows],
        "total": _waiting_row(p, TOTAL, "Total", all_waits),
    }


def _waiting_row(p: Published, code: str, label: str, days: Sequence[float]) -> dict[str, Any]:
    return {
        "code": code,
        "label": label,
        **{name: p.display((code, name)) for name in WAITING_COUNTERS},
        "unmatched_rate": rate_of(p, (code, "waiting"), (code, "opted_in")),
        "median_wait_days": median_wait(days, p, (code, "matched")),
    }
