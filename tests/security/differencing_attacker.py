"""An automated differencing attacker against the published reports.

It sees only what an analyst sees in rounded (published) mode: summaries, breakdowns
(and their CSV), for every filter combination and overlapping month range it is given.
Each published count becomes an interval of possible true values (from the published
method: a rounded number, a small-count marker, a perturbation bound). It then knows
what any statistician knows about the figures:

* additivity: a breakdown's rows add up to its total; started = stayed + withdrawn;
  stayed = continuing + on break + completed; withdrawn = the sum of the reasons; ESOL
  all = matched + unmatched; opted in = waiting + matched; a month range = the months in
  it (every split of a range into two published ranges);
* identity: the same records reached through different queries (a borough row of a
  breakdown, the summary filtered to that borough, a month row and a one-month range)
  are one unknown;
* rates: when the method computes a rate from true values, ``round(num / den, 3) = r``
  constrains the pair.

It tightens the intervals (bounds propagation over the linear equations, enumeration
over the rates) until nothing changes. A cell is *recovered* when its interval is a
single value below the threshold that is not 0. ``truth`` is used only to check that the
reasoning is sound (the true value is always inside the interval) and to score.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from services.reporting.domain.disclosure import CellKeyMethod

INF = 10**12
Interval = tuple[int, int]
ALL = "*"

OUTCOME_MEASURES = (
    "started",
    "stayed",
    "withdrawn",
    "completed",
    "continuing",
    "on_break",
    "achieved",
    "esol_assessed",
    "esol_progressed",
)
MVU = ("started", "withdrawn", "completed", "achieved", "esol_assessed", "esol_progressed")


# ---------------------------------------------------------------------------------------
# What a published value tells the attacker.


class Knowledge:
    """The published method, as an attacker reads it."""

    threshold: int = 5
    rates_from_true_values: bool = False

    def interval(self, shown: Any) -> Interval:
        raise NotImplementedError


class LegacyKnowledge(Knowledge):
    """'<5' is 1-4; 'c' anything; a number v is 0 (v = 0) or v-2..v+2 outside 1-4;
    rates are from true values."""

    threshold = 5
    rates_from_true_values = True

    def interval(self, shown: Any) -> Interval:
        if shown == "<5":
            return (1, 4)
        if shown == "c":
            return (0, INF)
        v = int(shown)
        if v == 0:
            return (0, 0)
        return (max(5, v - 2), v + 2)


class CellKeyKnowledge(Knowledge):
    """The cell-key method with its published parameters (ptable included): the
    interval of a shown value is every true count some cell key could publish as it."""

    rates_from_true_values = False

    def __init__(self, method: CellKeyMethod) -> None:
        # The attacker knows the method and ptable, not the deployment secret: with
        # every cell key possible, the permutation does not matter.
        self.method = CellKeyMethod(
            threshold=method.threshold,
            rounding_base=method.rounding_base,
            max_noise=method.max_noise,
        )
        self.threshold = method.threshold

    def interval(self, shown: Any) -> Interval:
        return self._interval(str(shown))

    @cache  # noqa: B019 - a few hundred distinct values, instance lives for one run
    def _interval(self, shown: str) -> Interval:
        m = self.method
        top = m.threshold if shown == m.small else int(shown)
        span = top + m.max_noise + m.rounding_base + 1
        possible = [
            n
            for n in range(0, span + 1)
            if any(str(m.publish_key(n, k)) == shown for k in range(256))
        ]
        assert possible, shown
        return (min(possible), max(possible))


# ---------------------------------------------------------------------------------------
# Cells: a measure over a set of records described by its scope.


@dataclass(frozen=True)
class Scope:
    las: frozenset[str]
    programmes: frozenset[str]
    levels: frozenset[str]
    ethnic: frozenset[str]
    months: frozenset[str]


NodeKey = tuple[str, Scope]


@dataclass(frozen=True)
class Query:
    """One request: ``report`` is 'summary' or 'breakdown:<by>' or 'csv:<by>'."""

    report: str
    params: Mapping[str, str]


@dataclass
class Universe:
    """What the attacker knows of the vocabularies (all public: GET /meta)."""

    las_of: Mapping[str, Sequence[str]]  # combined authority -> its local authorities
    programmes: Sequence[str]
    levels: Sequence[str]
    ethnic_groups: Sequence[str]
    months: Sequence[str]

    @property
    def all_las(self) -> frozenset[str]:
        return frozenset(la for las in self.las_of.values() for la in las)


def month_ranges(months: Sequence[str]) -> list[tuple[str, str]]:
    return [(months[i], months[j]) for i in range(len(months)) for j in range(i, len(months))]


def plan(
    universe: Universe,
    *,
    areas: Sequence[Mapping[str, str]],
    programmes: Sequence[str | None],
    reports: Sequence[str] = (
        "summary",
        "breakdown:local_authority",
        "breakdown:programme",
        "breakdown:level",
        "breakdown:ethnicity",
        "breakdown:month",
    ),
) -> list[Query]:
    """Every report x area x programme x overlapping month range."""
    out: list[Query] = []
    for area in areas:
        for programme in programmes:
            for first, last in month_ranges(universe.months):
                params = {**area, "from": first, "to": last}
                if programme:
                    params["programme"] = programme
                out += [Query(r, params) for r in reports]
    return out


@dataclass
class Attack:
    universe: Universe
    knowledge: Knowledge
    nodes: dict[NodeKey, int] = field(default_factory=dict)
    lo: list[int] = field(default_factory=list)
    hi: list[int] = field(default_factory=list)
    truth: dict[int, int] = field(default_factory=dict)
    published: set[int] = field(default_factory=set)
    shown: dict[int, Any] = field(default_factory=dict)
    equations: set[tuple[int, tuple[int, ...]]] = field(default_factory=set)
    rates: set[tuple[int, int, float]] = field(default_factory=set)
    queries: int = 0

    # -- nodes ---------------------------------------------------------------------

    def node(self, measure: str, scope: Scope) -> int:
        if measure.startswith(("m_", "p_")):  # matching figures ignore programme/level
            scope = Scope(
                scope.las, frozenset({ALL}), frozenset({ALL}), frozenset({ALL}), scope.months
            )
        key = (measure, scope)
        index = self.nodes.get(key)
        if index is None:
            index = len(self.lo)
            self.nodes[key] = index
            self.lo.append(0)
            self.hi.append(INF)
        return index

    def observe(self, measure: str, scope: Scope, shown: Any, true: Any) -> int:
        i = self.node(measure, scope)
        lo, hi = self.knowledge.interval(shown)
        self.lo[i], self.hi[i] = max(self.lo[i], lo), min(self.hi[i], hi)
        self.published.add(i)
        self.shown[i] = shown
        if true is not None:
            self.truth[i] = int(true)
        return i

    def equation(self, total: int, members: Iterable[int]) -> None:
        self.equations.add((total, tuple(sorted(set(members)))))

    # -- reading reports -----------------------------------------------------------

    def scope_of(self, params: Mapping[str, str]) -> Scope:
        u = self.universe
        if "local_authority" in params:
            las = frozenset({params["local_authority"]})
        elif "combined_authority" in params:
            las = frozenset(u.las_of[params["combined_authority"]])
        else:
            las = u.all_las
        programmes = frozenset({params["programme"]} if "programme" in params else u.programmes)
        levels = frozenset({params["level"]} if "level" in params else u.levels)
        months = frozenset(m for m in u.months if params["from"] <= m <= params["to"])
        return Scope(las, programmes, levels, frozenset(u.ethnic_groups), months)

    def read(self, query: Query, shown: Mapping[str, Any], true: Mapping[str, Any] | None) -> None:
        self.queries += 1
        scope = self.scope_of(query.params)
        if query.report == "summary":
            self._read_summary(scope, shown, true)
        else:
            self._read_breakdown(query.report.split(":")[1], scope, shown, true)

    def _rate(self, num: int, den: int, rate: Any) -> None:
        if rate is not None and self.knowledge.rates_from_true_values:
            self.rates.add((num, den, float(rate)))

    def _row_relations(self, cells: Mapping[str, int], scope: Scope) -> None:
        c = cells
        if {"started", "stayed", "withdrawn"} <= set(c):
            self.equation(c["started"], (c["stayed"], c["withdrawn"]))
        if {"stayed", "continuing", "on_break", "completed"} <= set(c):
            self.equation(c["stayed"], (c["continuing"], c["on_break"], c["completed"]))
        if {"completed", "withdrawn"} <= set(c):
            leavers = self.node("leavers", scope)
            self.equation(leavers, (c["completed"], c["withdrawn"]))

    def _read_summary(
        self, scope: Scope, shown: Mapping[str, Any], true: Mapping[str, Any] | None
    ) -> None:
        def t(*path: Any) -> Any:
            if true is None:
                return None
            v: Any = true
            for p in path:
                v = v[p]
            return v

        e = shown["enrolments"]
        cells = {m: self.observe(m, scope, e[m], t("enrolments", m)) for m in OUTCOME_MEASURES[:7]}
        self._row_relations(cells, scope)
        leavers = self.node("leavers", scope)
        self._rate(cells["completed"], leavers, e["completion_rate"])
        self._rate(cells["achieved"], leavers, e["achievement_rate"])
        self._rate(cells["stayed"], cells["started"], e["retention_rate"])
        reasons = [
            self.observe(f"reason_{r['code']}", scope, r["count"], None)
            for r in shown["withdrawal_reasons"]
        ]
        if true is not None:
            for r, i in zip(true["withdrawal_reasons"], reasons, strict=True):
                self.truth[i] = int(r["count"])
        self.equation(cells["withdrawn"], reasons)

        esol_programmes = scope.programmes & {"esol"}
        if esol_programmes:
            es = Scope(scope.las, esol_programmes, scope.levels, scope.ethnic, scope.months)
            blocks: dict[str, dict[str, int]] = {}
            for row in ("all", "matched", "unmatched"):
                prefix = "" if row == "all" else f"{row}_"
                b = shown["esol"][row]
                blocks[row] = {
                    c: self.observe(prefix + c, es, b[c], t("esol", row, c)) for c in MVU
                }
                cells_row = blocks[row]
                den = self.node(prefix + "leavers", es)
                self.equation(den, (cells_row["completed"], cells_row["withdrawn"]))
                self._rate(cells_row["completed"], den, b["completion_rate"])
                self._rate(cells_row["achieved"], den, b["achievement_rate"])
                self._rate(
                    cells_row["esol_progressed"], cells_row["esol_assessed"], b["progression_rate"]
                )
            for c in MVU:
                self.equation(blocks["all"][c], (blocks["matched"][c], blocks["unmatched"][c]))

        m = shown["matching"]
        match = {
            k: self.observe(f"m_{k}", scope, m[k], t("matching", k))
            for k in ("proposed", "confirmed", "cross_background", "declined", "ended")
        }
        self._rate(match["cross_background"], match["confirmed"], m["cross_background_share"])
        w = shown["waiting_list"]
        p = {
            k: self.observe(f"p_{k}", scope, w[k], t("waiting_list", k))
            for k in ("opted_in", "waiting", "matched")
        }
        self.equation(p["opted_in"], (p["waiting"], p["matched"]))

    def _read_breakdown(
        self, by: str, scope: Scope, shown: Mapping[str, Any], true: Mapping[str, Any] | None
    ) -> None:
        measure_of = {
            "matches_confirmed": "m_confirmed",
            "cross_background": "m_cross_background",
            "waiting": "p_waiting",
        }
        true_rows = {r["code"]: r for r in [*true["rows"], true["total"]]} if true else {}
        per_column: dict[str, list[int]] = {}
        totals: dict[str, int] = {}
        for row in [*shown["rows"], shown["total"]]:
            code = row["code"]
            if code == "total":
                s = scope
            elif by == "local_authority":
                s = Scope(
                    frozenset({code}), scope.programmes, scope.levels, scope.ethnic, scope.months
                )
            elif by == "programme":
                s = Scope(scope.las, frozenset({code}), scope.levels, scope.ethnic, scope.months)
            elif by == "level":
                s = Scope(
                    scope.las, scope.programmes, frozenset({code}), scope.ethnic, scope.months
                )
            elif by == "ethnicity":
                s = Scope(
                    scope.las, scope.programmes, scope.levels, frozenset({code}), scope.months
                )
            else:
                s = Scope(
                    scope.las, scope.programmes, scope.levels, scope.ethnic, frozenset({code})
                )
            cells: dict[str, int] = {}
            for key, value in row["values"].items():
                tv = true_rows[code]["values"][key] if true else None
                cells[key] = self.observe(measure_of.get(key, key), s, value, tv)
                if code == "total":
                    totals[key] = cells[key]
                else:
                    per_column.setdefault(key, []).append(cells[key])
            self._row_relations(cells, s)
            leavers = self.node("leavers", s)
            r = row["rates"]
            self._rate(cells["completed"], leavers, r["completion_rate"])
            self._rate(cells["achieved"], leavers, r["achievement_rate"])
            self._rate(cells["esol_progressed"], cells["esol_assessed"], r["esol_progression_rate"])
            if "cross_background_share" in r:
                self._rate(
                    cells["cross_background"],
                    cells["matches_confirmed"],
                    r["cross_background_share"],
                )
        for key, members in per_column.items():
            if totals[key] not in members:
                self.equation(totals[key], members)

    # -- month splits ----------------------------------------------------------------

    def add_month_splits(self) -> None:
        """A published range is any two published sub-ranges that split it."""
        months = list(self.universe.months)
        position = {m: i for i, m in enumerate(months)}
        for (measure, scope), index in list(self.nodes.items()):
            if len(scope.months) < 2:
                continue
            span = sorted(scope.months, key=position.__getitem__)
            for cut in range(1, len(span)):
                left = Scope(
                    scope.las, scope.programmes, scope.levels, scope.ethnic, frozenset(span[:cut])
                )
                right = Scope(
                    scope.las, scope.programmes, scope.levels, scope.ethnic, frozenset(span[cut:])
                )
                a, b = self.nodes.get((measure, left)), self.nodes.get((measure, right))
                if a is not None and b is not None:
                    self.equation(index, (a, b))

    # -- solving -------------------------------------------------------------------

    def solve(self, max_rounds: int = 50) -> None:
        self.add_month_splits()
        lo, hi = self.lo, self.hi
        equations = [(t, list(ms)) for t, ms in self.equations if ms]
        rates = sorted(self.rates)
        for _ in range(max_rounds):
            changed = False
            for total, members in equations:
                slo = sum(lo[m] for m in members)
                shi = sum(hi[m] for m in members)
                if slo > lo[total]:
                    lo[total], changed = slo, True
                if shi < hi[total]:
                    hi[total], changed = shi, True
                tlo, thi = lo[total], hi[total]
                for m in members:
                    new_lo = tlo - (shi - hi[m])
                    new_hi = thi - (slo - lo[m])
                    if new_lo > lo[m]:
                        lo[m], changed = new_lo, True
                    if new_hi < hi[m]:
                        hi[m], changed = new_hi, True
            for num, den, rate in rates:
                if self._tighten_rate(num, den, rate):
                    changed = True
            if not changed:
                break

    def _tighten_rate(self, num: int, den: int, rate: float) -> bool:
        lo, hi = self.lo, self.hi
        d_lo, d_hi = max(lo[den], 1), hi[den]
        if d_hi - d_lo > 2000:
            return False
        nums: list[int] = []
        dens: list[int] = []
        for d in range(d_lo, d_hi + 1):
            first = max(lo[num], math.floor((rate - 0.0006) * d))
            last = min(hi[num], math.ceil((rate + 0.0006) * d))
            ok = [n for n in range(first, last + 1) if round(n / d, 3) == rate]
            if ok:
                dens.append(d)
                nums += ok
        if not dens:
            return False
        changed = False
        for index, values in ((num, nums), (den, dens)):
            if min(values) > lo[index]:
                lo[index], changed = min(values), True
            if max(values) < hi[index]:
                hi[index], changed = max(values), True
        return changed

    # -- results -------------------------------------------------------------------

    def unsound(self) -> list[tuple[NodeKey, int, Interval]]:
        """Cells whose true value the reasoning excluded (must be empty)."""
        keys = {i: k for k, i in self.nodes.items()}
        return [
            (keys[i], v, (self.lo[i], self.hi[i]))
            for i, v in self.truth.items()
            if not self.lo[i] <= v <= self.hi[i]
        ]

    def recovered_hidden(self) -> list[tuple[NodeKey, int]]:
        """Published cells shown as a marker ('<5', 'c', '<10') whose value was pinned."""
        keys = {i: k for k, i in self.nodes.items()}
        return [
            (keys[i], self.lo[i])
            for i, shown in self.shown.items()
            if not isinstance(shown, int) and self.lo[i] == self.hi[i]
        ]

    def recovered(self, below: int | None = None) -> list[tuple[NodeKey, int]]:
        """Cells pinned to one value in 1..threshold-1 (published or not)."""
        limit = below if below is not None else self.knowledge.threshold
        keys = {i: k for k, i in self.nodes.items()}
        return [
            (keys[i], self.lo[i])
            for i in range(len(self.lo))
            if self.lo[i] == self.hi[i] and 0 < self.lo[i] < limit
        ]


# ---------------------------------------------------------------------------------------
# Running it against something that answers queries.

Fetch = Callable[[Query, bool], Awaitable[Mapping[str, Any]]]


def table_from_csv(text: str) -> dict[str, Any]:
    """A breakdown read back from its CSV (what a spreadsheet user gets)."""
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    value_keys = [h for h in header[2:] if not h.endswith(("_rate", "_share"))]
    rate_keys = [h for h in header[2:] if h.endswith(("_rate", "_share"))]
    out = []
    for r in rows[1:]:
        cells = dict(zip(header, r, strict=True))

        def parse(v: str) -> Any:
            return int(v) if v.lstrip("-").isdigit() else v

        out.append(
            {
                "code": cells[header[0]],
                "values": {k: parse(cells[k]) for k in value_keys},
                "rates": {k: (float(cells[k]) if cells[k] else None) for k in rate_keys},
            }
        )
    return {"rows": out[:-1], "total": out[-1]}


async def run(
    attack: Attack, queries: Sequence[Query], fetch: Fetch, *, with_truth: bool = True
) -> Attack:
    """Ask every query (published, and unrounded for scoring), then solve."""
    for q in queries:
        shown = await fetch(q, True)
        true = await fetch(q, False) if with_truth else None
        attack.read(q, shown, true)
    attack.solve()
    return attack


@dataclass(frozen=True)
class ErrorBand:
    band: str
    cells: int
    mean_abs_error: float
    max_abs_error: int
    shown_as_marker: int


BANDS = ((0, 0, "0"), (1, 9, "1-9"), (10, 49, "10-49"), (50, 199, "50-199"), (200, INF, "200+"))


def error_bands(attack: Attack) -> list[ErrorBand]:
    """How far published numbers are from the true ones, per true-size band, over the
    distinct cells shown as numbers (cells shown as a marker are counted apart)."""
    out = []
    for low, high, label in BANDS:
        errors = []
        markers = 0
        for i, true in attack.truth.items():
            if not low <= true <= high or i not in attack.shown:
                continue
            shown = attack.shown[i]
            if isinstance(shown, int):
                errors.append(abs(shown - true))
            else:
                markers += 1
        if errors or markers:
            mean = sum(errors) / len(errors) if errors else 0.0
            out.append(
                ErrorBand(label, len(errors), round(mean, 3), max(errors, default=0), markers)
            )
    return out
