"""Statistical disclosure control for published counts. Pure functions, no I/O.

Two methods (``REPORTING_DISCLOSURE_METHOD``), described for the statistician in
docs/disclosure.md:

* ``cell_key`` (the default): persistent cell-key perturbation. Each record has a key
  fixed by its id; a cell's key is the sum of its records' keys mod 256 (permuted by the
  deployment secret), so the same set of records gets the same noise in every query,
  after a rebuild and on every instance. The noise comes from a perturbation table
  (:class:`PTable`), then small values are shown as ``"<T"`` and the rest rounded. Rates
  are computed from the published figures only. See :class:`CellKeyMethod`.
* ``legacy``: the former cell-by-cell rules below, kept callable so that the
  differencing attacker in the test suite can show what they disclosed. Do not use.

The legacy rules:

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

import hashlib
import hmac
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol

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


# ---------------------------------------------------------------------------------------
# The common interface of the report builders: every published count is a Cell (true
# count and the sum of its records' keys); a method turns cells into what is published.

MethodName = Literal["cell_key", "legacy"]
RATE_DIGITS = 3


@dataclass(frozen=True)
class Cell:
    """A count of records and the sum of their record keys (kept whole, not mod 256)."""

    count: int
    key_sum: int = 0

    def __sub__(self, other: Cell) -> Cell:
        return Cell(self.count - other.count, self.key_sum - other.key_sum)

    def __add__(self, other: Cell) -> Cell:
        return Cell(self.count + other.count, self.key_sum + other.key_sum)


def sum_cells(cells: Iterable[Cell]) -> Cell:
    """The cell of the records of ``cells`` together (counts and key sums added)."""
    return sum(cells, Cell(0))


class Published(Protocol):
    """What a report shows for its cells."""

    @property
    def mode(self) -> Literal["rounded", "unrounded"]: ...

    def display(self, cell: CellId) -> Displayed: ...

    def rate(self, numerator: CellId, denominator: Sequence[CellId]) -> float | None:
        """``numerator / sum(denominator)``, or ``None`` (undefined or withheld)."""
        ...

    def shows_median(self, count_cell: CellId, n: int) -> bool:
        """Whether a median over the ``n`` records of ``count_cell`` may be shown."""
        ...


@dataclass(frozen=True)
class Unrounded:
    """Exact figures for authorised analysts."""

    values: Mapping[CellId, Cell]
    mode: Literal["rounded", "unrounded"] = "unrounded"

    def display(self, cell: CellId) -> Displayed:
        return self.values[cell].count

    def rate(self, numerator: CellId, denominator: Sequence[CellId]) -> float | None:
        den = sum(self.values[d].count for d in denominator)
        if den <= 0:
            return None
        return round(self.values[numerator].count / den, RATE_DIGITS)

    def shows_median(self, count_cell: CellId, n: int) -> bool:
        return n > 0


@dataclass(frozen=True)
class Legacy:
    """The former method (primary + secondary suppression, rounding, rates from true
    values): kept for the differencing attacker's before/after comparison only."""

    protected: Protected
    mode: Literal["rounded", "unrounded"] = "rounded"

    def display(self, cell: CellId) -> Displayed:
        return self.protected.display(cell)

    def rate(self, numerator: CellId, denominator: Sequence[CellId]) -> float | None:
        den = sum(self.protected.values[d] for d in denominator)
        return self.protected.rate(numerator, den, RATE_DIGITS)

    def shows_median(self, count_cell: CellId, n: int) -> bool:
        return n >= THRESHOLD


# ---------------------------------------------------------------------------------------
# Cell-key perturbation.


@dataclass(frozen=True)
class PTable:
    """A perturbation table: for a true count ``n`` and a cell key ``k`` in 0..255, the
    noise added. Every row spreads the 256 keys over noise ``-D..D`` with weights
    halving per step away from 0 (D=3: 0 on 36%, ±1 on 18%, ±2 on 9%, ±3 on 4.5% each),
    truncated so that ``n + noise >= 0``. Rows for ``n > D`` are identical, so a
    published figure is ``n + noise`` with unbiased noise (small counts slightly biased
    upwards by the truncation)."""

    max_noise: int = 3

    def row(self, n: int) -> tuple[int, ...]:
        return self._rows[min(n, self.max_noise + 1)]

    def noise(self, n: int, key: int) -> int:
        return 0 if n <= 0 else self.row(n)[key % 256]

    @cached_property
    def _rows(self) -> dict[int, tuple[int, ...]]:
        rows: dict[int, tuple[int, ...]] = {}
        d = self.max_noise
        for n in range(0, d + 2):
            support = [v for v in range(-d, d + 1) if n + v >= 0]
            weights = {v: 2 ** (d - abs(v)) for v in support}
            total = sum(weights.values())
            slots = {v: (256 * w) // total for v, w in weights.items()}
            slots[0] += 256 - sum(slots.values())
            rows[n] = tuple(v for v in support for _ in range(slots[v]))
        return rows


@dataclass(frozen=True)
class CellKeyMethod:
    """Parameters of the cell-key method (deployment settings, docs/disclosure.md).

    A published count is ``p = n + ptable(n, cell key)`` (``p = 0`` for a true zero);
    ``p < threshold`` is shown as ``"<threshold"`` (so a true zero is not told apart
    from a small count: "no activity" is itself a small count), larger ``p`` rounded to
    the nearest ``rounding_base``. A rate is computed from the published
    numerator and denominator, to ``RATE_DIGITS`` decimals, capped at 1, and withheld
    when either is not a published number or the denominator is below the threshold.
    A median is shown only beside a published count of at least the threshold."""

    threshold: int = 10
    rounding_base: int = 5
    max_noise: int = 3
    secret: bytes = b""
    ptable: PTable = field(init=False)

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.rounding_base < 1 or self.max_noise < 0:
            raise ValueError("threshold and rounding base must be positive, noise >= 0")
        if self.threshold % self.rounding_base:
            raise ValueError("the threshold must be a multiple of the rounding base")
        object.__setattr__(self, "ptable", PTable(self.max_noise))

    @property
    def small(self) -> str:
        return f"<{self.threshold}"

    @cached_property
    def _permutation(self) -> tuple[int, ...]:
        if not self.secret:
            return tuple(range(256))
        order = sorted(
            range(256), key=lambda i: hmac.new(self.secret, bytes([i]), hashlib.sha256).digest()
        )
        return tuple(order)

    def cell_key(self, key_sum: int) -> int:
        """The cell key: the records' key sum mod 256, through the secret permutation."""
        return self._permutation[key_sum % 256]

    def perturbed(self, cell: Cell) -> int:
        if cell.count <= 0:
            return 0
        return cell.count + self.ptable.noise(cell.count, self.cell_key(cell.key_sum))

    def publish(self, cell: Cell) -> Displayed:
        return self.publish_key(cell.count, self.cell_key(cell.key_sum))

    def publish_key(self, count: int, cell_key: int) -> Displayed:
        """What a cell of ``count`` records with cell key ``cell_key`` publishes."""
        p = 0 if count <= 0 else count + self.ptable.noise(count, cell_key)
        if p < self.threshold:
            return self.small
        return round_count(p, self.rounding_base)


@dataclass(frozen=True)
class CellKeyPublished:
    values: Mapping[CellId, Cell]
    method: CellKeyMethod
    mode: Literal["rounded", "unrounded"] = "rounded"

    def display(self, cell: CellId) -> Displayed:
        return self.method.publish(self.values[cell])

    def rate(self, numerator: CellId, denominator: Sequence[CellId]) -> float | None:
        num = self.display(numerator)
        dens = [self.display(d) for d in denominator]
        if not isinstance(num, int) or not all(isinstance(d, int) for d in dens):
            return None
        den = sum(int(d) for d in dens)
        if den < self.method.threshold:
            return None
        return min(1.0, round(num / den, RATE_DIGITS))

    def shows_median(self, count_cell: CellId, n: int) -> bool:
        shown = self.display(count_cell)
        return isinstance(shown, int) and shown >= self.method.threshold and n > 0


@dataclass(frozen=True)
class LegacyMethod:
    threshold: int = THRESHOLD


DisclosureMethod = CellKeyMethod | LegacyMethod


def publish(
    values: Mapping[CellId, Cell],
    lines: Sequence[Line],
    method: DisclosureMethod | None,
) -> Published:
    """Apply ``method`` to ``values`` (``None``: the unrounded analyst view). ``lines``
    (the additive relations between cells) are used by the legacy method only: the
    cell-key method needs no secondary suppression."""
    if method is None:
        return Unrounded(values)
    if isinstance(method, LegacyMethod):
        counts = {c: v.count for c, v in values.items()}
        return Legacy(protect(counts, lines, threshold=method.threshold))
    return CellKeyPublished(values, method)
