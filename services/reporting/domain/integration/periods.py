"""Months and calendar quarters of the integration reports, and when a mark is observable."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, timedelta


def quarter_of(month: str) -> str:
    """``"2025-04"`` → ``"2025-Q2"`` (calendar quarters)."""
    return f"{month[:4]}-Q{(int(month[5:7]) - 1) // 3 + 1}"


def quarter_label(quarter: str) -> str:
    year, q = quarter.split("-Q")
    first = (int(q) - 1) * 3 + 1
    names = [calendar.month_abbr[m] for m in (first, first + 2)]
    return f"{year} Q{q} ({names[0]}-{names[1]})"


def months_by_quarter(months: Iterable[str]) -> dict[str, list[str]]:
    """The months grouped by calendar quarter, both in the order given."""
    quarters: dict[str, list[str]] = {}
    for month in months:
        quarters.setdefault(quarter_of(month), []).append(month)
    return quarters


def last_day(month: str) -> date:
    year, mon = int(month[:4]), int(month[5:7])
    return date(year, mon, calendar.monthrange(year, mon)[1])


def observable(last_month: str, mark_days: int, today: date) -> bool:
    """Every match confirmed in a cohort ending with ``last_month`` has reached the mark."""
    return last_day(last_month) + timedelta(days=mark_days) <= today
