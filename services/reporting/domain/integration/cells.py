"""The cells of the integration reports: counters added up, one cell per borough with a
total over every borough in scope, and figures read back from what is published."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.reporting.domain.disclosure import Cell, CellId, Published, sum_cells
from services.reporting.domain.projection import Counts

TOTAL = "total"
"""The borough code of the total row (every borough in scope)."""


def add_counts(parts: Iterable[Counts]) -> Counts:
    """Counter by counter sum of ``parts``."""
    total: Counts = {}
    for counts in parts:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def borough_cells(
    las: Sequence[tuple[str, str]], period: str, name: str, per_borough: Sequence[Cell]
) -> dict[CellId, Cell]:
    """``per_borough`` (in the order of ``las``) keyed ``(borough, period, name)``, then
    their total keyed ``(TOTAL, period, name)``."""
    cells: dict[CellId, Cell] = {
        (la, period, name): c for (la, _), c in zip(las, per_borough, strict=True)
    }
    cells[(TOTAL, period, name)] = sum_cells(per_borough)
    return cells


def rate_of(p: Published, numerator: CellId, denominator: CellId) -> float | None:
    """``numerator / denominator`` from the published figures (``None``: withheld)."""
    return p.rate(numerator, (denominator,))


def published_number(p: Published, cell_id: CellId) -> int | None:
    """The published figure of ``cell_id`` when it is a number (not withheld)."""
    shown = p.display(cell_id)
    return shown if isinstance(shown, int) else None
