"""Statistical disclosure control for published counts. Pure functions, no I/O.

The rules (see README "Disclosure control"):

* **primary suppression**: a count of 1-4 is shown as ``"<5"``;
* **rounding**: every other count is rounded to the nearest 5; a true zero is shown as 0;
* **secondary suppression**: wherever published cells add up to a published total (a
  *line*: a table row or column with its total), a line must not have exactly one
  suppressed cell, or the cell could be recovered by subtraction. The smallest
  non-zero unsuppressed cell of such a line is suppressed too (shown as ``"c"``) and
  the check repeats until no line has a single suppressed cell (a cell may sit in a
  row and a column, so one suppression can expose another line);
* **rates** are computed from unrounded values and withheld when their numerator is
  suppressed, their denominator is below the threshold, or what the rate leaves out
  (denominator - numerator) is 1-4: a rate next to rounded counts would otherwise give
  a small count back.

An analyst (``Role.ANALYST``) may ask for the unrounded view, where no rule applies.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

THRESHOLD = 5
ROUNDING_BASE = 5
SUPPRESSED = "<5"
SECONDARY = "c"

CellId = Any
Displayed = int | str
Suppression = Literal["primary", "secondary"]


@dataclass(frozen=True)
class Line:
    """Cells that add up to ``total`` (both published). ``total`` may be ``None`` when
    the sum is not published anywhere (then the line constrains nothing)."""

    total: CellId | None
    members: tuple[CellId, ...]


def round_count(value: int, base: int = ROUNDING_BASE) -> int:
    """Nearest multiple of ``base`` (an integer count never sits exactly half-way for 5)."""
    return int(base * round(value / base))


def primary_suppressed(value: int, threshold: int = THRESHOLD) -> bool:
    return 0 < value < threshold


@dataclass(frozen=True)
class Protected:
    """The outcome of :func:`protect`: true values and which cells are withheld."""

    values: Mapping[CellId, int]
    suppressed: Mapping[CellId, Suppression]
    rounded: bool = True

    def display(self, cell: CellId) -> Displayed:
        value = self.values[cell]
        if not self.rounded:
            return value
        kind = self.suppressed.get(cell)
        if kind == "primary":
            return SUPPRESSED
        if kind == "secondary":
            return SECONDARY
        return round_count(value)

    def is_suppressed(self, cell: CellId) -> bool:
        return self.rounded and cell in self.suppressed

    def rate(self, numerator: CellId, denominator: int, digits: int = 3) -> float | None:
        """``numerator / denominator`` from unrounded values, or ``None`` when it is
        undefined (zero denominator) or would disclose a suppressed count."""
        if denominator <= 0:
            return None
        value = self.values[numerator]
        if self.rounded and (
            self.is_suppressed(numerator)
            or primary_suppressed(denominator)
            or primary_suppressed(denominator - value)
        ):
            return None
        return round(value / denominator, digits)


def protect(
    values: Mapping[CellId, int],
    lines: Sequence[Line] = (),
    *,
    rounded: bool = True,
    threshold: int = THRESHOLD,
) -> Protected:
    """Apply primary and secondary suppression to ``values`` given the additive ``lines``."""
    if not rounded:
        return Protected(dict(values), {}, rounded=False)
    suppressed: dict[CellId, Suppression] = {
        cell: "primary" for cell, value in values.items() if primary_suppressed(value, threshold)
    }
    changed = True
    while changed:
        changed = False
        for line in lines:
            if line.total is None or line.total in suppressed:
                continue
            hidden = [m for m in line.members if m in suppressed]
            if len(hidden) != 1:
                continue
            candidate = _next_smallest(values, line.members, suppressed)
            suppressed[candidate if candidate is not None else line.total] = "secondary"
            changed = True
    return Protected(dict(values), suppressed, rounded=True)


def _next_smallest(
    values: Mapping[CellId, int],
    members: Sequence[CellId],
    suppressed: Mapping[CellId, Suppression],
) -> CellId | None:
    open_cells = [(values[m], i, m) for i, m in enumerate(members) if m not in suppressed]
    nonzero = [c for c in open_cells if c[0] > 0]
    pool = nonzero or open_cells
    if not pool:
        return None
    return min(pool, key=lambda c: (c[0], c[1]))[2]


def grid_lines(
    rows: Sequence[Hashable],
    columns: Sequence[Hashable],
    *,
    total_row: Hashable,
    row_relations: Sequence[tuple[Hashable, tuple[Hashable, ...]]] = (),
) -> list[Line]:
    """Lines of a table whose cells are ``(row, column)``: every column adds up to the
    ``total_row``; and within every row (total row included), each relation
    ``(total_column, member_columns)`` holds (e.g. started = stayed + withdrawn)."""
    lines = [Line((total_row, col), tuple((row, col) for row in rows)) for col in columns]
    for row in (*rows, total_row):
        for total_col, member_cols in row_relations:
            lines.append(Line((row, total_col), tuple((row, c) for c in member_cols)))
    return lines
