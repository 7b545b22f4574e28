"""Lasting bridges: the share of confirmed cross-background matches still active 6 weeks
and 6 months after confirmation, by borough and month of confirmation (definitions in
:mod:`services.reporting.domain.integration_facts`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from services.reporting.domain.dimensions import Filters, boroughs, month_range
from services.reporting.domain.disclosure import (
    Cell,
    CellId,
    DisclosureMethod,
    Published,
    publish,
)
from services.reporting.domain.integration.cells import TOTAL, borough_cells, rate_of
from services.reporting.domain.integration.periods import observable
from services.reporting.domain.integration_facts import ACTIVITY_WINDOW_DAYS, BRIDGE_MARKS
from services.reporting.domain.projection import Counts
from services.reporting.domain.reports import cell, disclosure_note

BRIDGE_COUNTERS = ("confirmed", "cross_confirmed", "cross_active_6w", "cross_active_6m")
"""The counters of the ``bridges`` aggregate."""

BRIDGE_DEFINITIONS: Mapping[str, str] = {
    "confirmed": "Befriending matches confirmed in the month.",
    "cross_background": "Of those, cross-background matches: volunteer and participant differ "
    "on at least one bridging dimension shared with consent (as decided by the matching "
    "service, carried on MatchConfirmed).",
    "active_6w": "Cross-background matches still active 6 weeks (42 days) after confirmation: "
    f"not ended before that day, and a meeting recorded in the {ACTIVITY_WINDOW_DAYS} days up "
    "to it (MatchCheckInRecorded). Null until every match of the month has reached the mark.",
    "active_6m": "The same at 6 months (182 days).",
    "share_active_6w": "active_6w / cross_background, from published figures.",
    "share_active_6m": "active_6m / cross_background, from published figures.",
}


def build_bridges(
    sums: Mapping[tuple[str, str], Counts],
    filters: Filters,
    *,
    today: date,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """Lasting bridges by borough and month of confirmation (``sums`` keyed by
    (local authority, month) from the ``bridges`` aggregate), with a total row per month
    over every borough in scope."""
    months = month_range(filters, (m for _, m in sums))
    las = boroughs(filters)
    values: dict[CellId, Cell] = {}
    for month in months:
        for name in BRIDGE_COUNTERS:
            per = [cell(sums.get((la, month), {}), name) for la, _ in las]
            values.update(borough_cells(las, month, name, per))
    p = publish(values, [], control)
    return {
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "as_of": today.isoformat(),
        "marks": {**BRIDGE_MARKS, "activity_window_days": ACTIVITY_WINDOW_DAYS},
        "definitions": dict(BRIDGE_DEFINITIONS),
        "rows": [_bridges_row(p, la, label, m, today) for m in months for la, label in las],
        "totals": [_bridges_row(p, TOTAL, "All boroughs in scope", m, today) for m in months],
    }


def _bridges_row(p: Published, la: str, label: str, month: str, today: date) -> dict[str, Any]:
    out: dict[str, Any] = {
        "local_authority": la,
        "label": label,
        "month": month,
        "confirmed": p.display((la, month, "confirmed")),
        "cross_background": p.display((la, month, "cross_confirmed")),
    }
    for mark, days in BRIDGE_MARKS.items():
        seen = observable(month, days, today)
        name = f"cross_active_{mark}"
        out[f"observable_{mark}"] = seen
        out[f"active_{mark}"] = p.display((la, month, name)) if seen else None
        out[f"share_active_{mark}"] = (
            rate_of(p, (la, month, name), (la, month, "cross_confirmed")) if seen else None
        )
    return out
