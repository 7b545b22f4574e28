"""Report dimensions: what a breakdown can be *by*, declared once in :data:`DIMENSIONS`.

A dimension's declaration drives the rest: the ``by`` values of the breakdown and CSV
routes (and their OpenAPI schema), the rows of a breakdown and their labels, which
read model a breakdown sums and which other read models add columns, and, for a
dimension filtered by an exact code, the MongoDB filter (``Filters.selected``). The
dimension's name is the field of the aggregate documents, the ``by`` value and the
CSV's first header. tests/unit/reporting/test_reporting_dimensions.py checks that every
declared dimension is stored in the aggregates it reads and that a filtered one has its
query parameter, and shows one added in a single place.

Programme and level names are declared with their enums (shared/contracts/reference.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from services.reporting.domain.projection import NO_LEVEL, NOT_STATED, AggregateName
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Ethnicity,
    Level,
    Programme,
)


@dataclass(frozen=True)
class Filters:
    """What a report covers. ``combined_authorities`` is the caller's scope narrowed by
    the ``combined_authority`` filter; never empty. ``programme`` and ``level`` are the
    codes of the dimensions filtered by an exact code (see :data:`FILTERED`)."""

    combined_authorities: tuple[str, ...]
    local_authority: str | None = None
    programme: str | None = None
    level: str | None = None
    month_from: str | None = None
    month_to: str | None = None

    def selected(self) -> dict[str, str]:
        """The exact-code filters set, by dimension name (in declaration order)."""
        chosen = ((name, getattr(self, name)) for name in FILTERED)
        return {name: code for name, code in chosen if code}

    def echo(self) -> dict[str, Any]:
        return {
            "combined_authorities": list(self.combined_authorities),
            "local_authority": self.local_authority,
            **{name: getattr(self, name) for name in FILTERED},
            "from": self.month_from,
            "to": self.month_to,
        }


# ---------------------------------------------------------------------------------------
# Vocabularies of the categories (code → label, in display order).

# Reporting's levels: the contract's, then enrolments without a level.
LEVEL_LABELS: dict[str, str] = {
    **{level.value: level.label for level in Level},
    NO_LEVEL: "No level",
}
PROGRAMME_NAMES: dict[str, str] = {p.value: p.label for p in Programme}
ETHNIC_GROUP_LABELS: dict[str, str] = {
    "asian": "Asian",
    "black": "Black",
    "mixed": "Mixed",
    "white": "White",
    "other": "Other ethnic group",
    NOT_STATED: "Not stated",
}


def ethnic_group(code: str) -> str:
    return NOT_STATED if code == NOT_STATED else Ethnicity(code).group


def months_between(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:7])
    end = (int(last[:4]), int(last[5:7]))
    out = []
    while (y, m) <= end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# ---------------------------------------------------------------------------------------
# How each dimension lists its rows: (code, label) in display order. Rows with no data
# are listed too, so every borough appears, not only those with activity.

Rows = Callable[[Filters, Iterable[str]], list[tuple[str, str]]]


def boroughs(filters: Filters) -> list[tuple[str, str]]:
    """Every borough in scope (code, name), by name: every borough is listed."""
    las = [
        (code, name)
        for ca in filters.combined_authorities
        for code, name in LOCAL_AUTHORITIES[CombinedAuthority(ca)].items()
    ]
    if filters.local_authority:
        las = [(c, n) for c, n in las if c == filters.local_authority]
    return sorted(las, key=lambda item: item[1])


def _borough_rows(filters: Filters, present: Iterable[str]) -> list[tuple[str, str]]:
    return boroughs(filters)


def month_range(filters: Filters, present: Iterable[str]) -> list[str]:
    """The months a report covers: the filter's bounds, else the months with data."""
    months = sorted(set(present))
    first = filters.month_from or (months[0] if months else None)
    last = filters.month_to or (months[-1] if months else None)
    if first is None or last is None or first > last:
        return []
    return months_between(first, last)


def _month_rows(filters: Filters, present: Iterable[str]) -> list[tuple[str, str]]:
    return [(m, m) for m in month_range(filters, present)]


def vocabulary(name: str, labels: Mapping[str, str]) -> Rows:
    """Rows of a fixed vocabulary; only the chosen code's when the dimension is filtered."""

    def rows(filters: Filters, present: Iterable[str]) -> list[tuple[str, str]]:
        chosen = filters.selected().get(name)
        return [(code, label) for code, label in labels.items() if chosen in (None, code)]

    return rows


# ---------------------------------------------------------------------------------------
# The dimensions.


@dataclass(frozen=True)
class Dimension:
    """A category reports break figures down by.

    ``name``: the aggregate documents' field, the ``by`` value and the CSV's first
    header. ``aggregate``: the read model a breakdown sums (it must have the field);
    ``group``: maps a stored code to the category reported (ethnicity is stored in the
    ONS 19 and reported in the 5 groups). ``also``: read models keyed by this dimension
    too, whose columns a breakdown adds (matching: matches confirmed; participants:
    learners waiting). ``filtered``: filterable by an exact code, with a query parameter
    and a :class:`Filters` field of the same name; its codes are the rows' codes.
    """

    name: str
    rows: Rows
    aggregate: AggregateName = "outcomes"
    group: Callable[[str], str] | None = None
    also: tuple[AggregateName, ...] = ()
    filtered: bool = False


def _dimensions(*declared: Dimension) -> dict[str, Dimension]:
    return {d.name: d for d in declared}


DIMENSIONS: dict[str, Dimension] = _dimensions(
    Dimension("local_authority", _borough_rows, also=("matching", "participants")),
    Dimension("programme", vocabulary("programme", PROGRAMME_NAMES), filtered=True),
    Dimension("level", vocabulary("level", LEVEL_LABELS), filtered=True),
    Dimension(
        "ethnicity",
        vocabulary("ethnicity", ETHNIC_GROUP_LABELS),
        aggregate="equality",
        group=lambda code: ethnic_group(code or NOT_STATED),
    ),
    Dimension("month", _month_rows, also=("matching",)),
)
"""Every breakdown dimension, in the order the API lists them."""

BREAKDOWNS: tuple[str, ...] = tuple(DIMENSIONS)
# The dimensions filtered by an exact code (Filters fields, query parameters).
FILTERED: tuple[str, ...] = tuple(d.name for d in DIMENSIONS.values() if d.filtered)

# The ``by`` parameter's type: the declared names (an enum in the OpenAPI schema). Built
# from DIMENSIONS, so mypy sees a str; routes validate it before it reaches a lookup.
if TYPE_CHECKING:
    BreakdownBy = str
else:
    BreakdownBy = Literal[BREAKDOWNS]


def filter_codes(name: str) -> list[str]:
    """The codes an exact-code filter accepts: its dimension's rows when unfiltered."""
    return [code for code, _ in DIMENSIONS[name].rows(Filters(combined_authorities=()), ())]


def categories(by: str, filters: Filters, present: Iterable[str]) -> list[tuple[str, str]]:
    """The rows of a breakdown by ``by``, in display order (``present``: codes with data)."""
    return DIMENSIONS[by].rows(filters, present)
