"""Matched vs unmatched ESOL learners: retention and achievement of learners with and
without a confirmed cross-background match, stratified on start cohort (quarter), level
and borough, with Wilson intervals and a stratified difference; associations, not effects."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.reporting.domain.dimensions import LEVEL_LABELS, Filters, month_range
from services.reporting.domain.disclosure import (
    RATE_DIGITS,
    Cell,
    CellId,
    DisclosureMethod,
    Published,
    publish,
    sum_cells,
)
from services.reporting.domain.integration.cells import (
    TOTAL,
    add_counts,
    published_number,
)
from services.reporting.domain.integration.periods import quarter_of
from services.reporting.domain.projection import Counts
from services.reporting.domain.reports import cell, disclosure_note
from shared.contracts.reference import ESOL_LEVELS

Z95 = 1.959963984540054

CAVEAT = (
    "An association, not an effect: learners choose to ask for a conversation partner and "
    "are matched when a volunteer fits, so motivation, confidence, time and circumstances "
    "can differ between the groups. Comparing within strata (same start quarter, ESOL "
    "level and borough) removes only those three differences. Do not read the difference "
    "as what matching causes."
)
METHOD = (
    "Strata: start quarter x starting ESOL level x borough. Within each stratum both "
    "groups' rates are compared; the stratified difference (matched - unmatched) weights "
    "each stratum by n1*n0/(n1+n0) (Cochran-Mantel-Haenszel weights) with a 95% Wald "
    "interval, variance sum(w^2 * (p1(1-p1)/n1 + p0(1-p0)/n0)) / sum(w)^2. Rounded mode: "
    "only strata whose four published counts are all numbers enter, and every figure is "
    "computed from published counts; unrounded mode: every stratum with learners in both "
    "groups. Group rates carry 95% Wilson score intervals."
)

ComparisonOutcome = Literal["retention", "achievement"]
OUTCOME_DEFINITIONS: Mapping[ComparisonOutcome, str] = {
    "retention": "stayed / started: enrolments not withdrawn, of those started.",
    "achievement": "achieved / leavers: completed with outcome 1, of those completed or "
    "withdrawn (the further-education 'all leavers' convention).",
}
OUTCOME_CELLS: Mapping[ComparisonOutcome, tuple[str, str]] = {
    "retention": ("stayed", "started"),
    "achievement": ("achieved", "leavers"),
}
ARM_MEASURES = ("started", "stayed", "achieved", "leavers")

GROUPS = {
    "matched": "ESOL enrolments of learners with at least one confirmed cross-background "
    "befriending match (whenever it was confirmed).",
    "unmatched": "ESOL enrolments of learners with no confirmed befriending match. Learners "
    "whose only matches bridged no background are in neither group.",
}
ARMS = ("matched", "unmatched")

StratumKey = tuple[str, str, str]
"""(local authority, starting ESOL level, start quarter)."""

# ---------------------------------------------------------------------------------------
# Statistics


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``x`` successes in ``n`` trials (None for n = 0)."""
    if n <= 0:
        return None
    x = max(0, min(x, n))
    phat = x / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return round(max(0.0, centre - half), RATE_DIGITS), round(min(1.0, centre + half), RATE_DIGITS)


@dataclass(frozen=True)
class Stratum:
    x1: int
    n1: int
    x0: int
    n0: int


def stratified_difference(strata: Sequence[Stratum], z: float = Z95) -> dict[str, float] | None:
    """Cochran-Mantel-Haenszel-weighted risk difference with a Wald interval."""
    usable = [s for s in strata if s.n1 > 0 and s.n0 > 0]
    if not usable:
        return None
    weights = [s.n1 * s.n0 / (s.n1 + s.n0) for s in usable]
    total = math.fsum(weights)
    diffs, variances = [], []
    for s in usable:
        p1, p0 = min(s.x1, s.n1) / s.n1, min(s.x0, s.n0) / s.n0
        diffs.append(p1 - p0)
        variances.append(p1 * (1 - p1) / s.n1 + p0 * (1 - p0) / s.n0)
    estimate = math.fsum(w * d for w, d in zip(weights, diffs, strict=True)) / total
    var = math.fsum(w * w * v for w, v in zip(weights, variances, strict=True)) / total**2
    half = z * math.sqrt(var)
    return {
        "estimate": round(estimate, RATE_DIGITS),
        "ci_low": round(max(-1.0, estimate - half), RATE_DIGITS),
        "ci_high": round(min(1.0, estimate + half), RATE_DIGITS),
    }


# ---------------------------------------------------------------------------------------
# The report


def build_esol_comparison(
    outcomes: Mapping[tuple[str, str, str], Counts],
    bridged: Mapping[tuple[str, str, str], Counts],
    filters: Filters,
    *,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """``outcomes``: ESOL outcome counters (with ``matched_*``), ``bridged``: counters of
    the enrolments of learners with a cross-background match, both keyed by (local
    authority, level, month)."""
    months = set(month_range(filters, (m for _, _, m in [*outcomes, *bridged])))
    everyone_by = _strata(outcomes, months)
    bridged_by = _strata(bridged, months)
    keys = {*everyone_by, *bridged_by}
    values = _comparison_cells(keys, everyone_by, bridged_by)
    comparison = _Comparison(publish(values, [], control), values, sorted(keys), control)
    return {
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "question": "Do ESOL learners with a confirmed cross-background befriending match stay "
        "and achieve more than comparable learners without a match?",
        "groups": dict(GROUPS),
        "method": METHOD,
        "caveat": CAVEAT,
        "outcomes": [comparison.outcome("retention"), comparison.outcome("achievement")],
    }


def _strata(sums: Mapping[StratumKey, Counts], months: set[str]) -> dict[StratumKey, Counts]:
    """(local authority, level, month) counters → (local authority, level, quarter)."""
    esol_levels = {lvl.value for lvl in ESOL_LEVELS}
    out: dict[StratumKey, Counts] = {}
    for (la, level, month), counts in sums.items():
        if month in months and level in esol_levels:
            key = (la, level, quarter_of(month))
            out[key] = add_counts([out.get(key, {}), counts])
    return out


def _comparison_cells(
    keys: Iterable[StratumKey],
    everyone_by: Mapping[StratumKey, Counts],
    bridged_by: Mapping[StratumKey, Counts],
) -> dict[CellId, Cell]:
    """Per stratum and in total, the cells of each arm: matched (cross-background match)
    and unmatched (everyone less those with any confirmed match)."""
    values: dict[CellId, Cell] = {}
    for key in keys:
        counts = everyone_by.get(key, {})
        everyone = _arm_cells(counts, "")
        any_match = _arm_cells(counts, "matched_")
        cross = _arm_cells(bridged_by.get(key, {}), "")
        for name in everyone:
            values[(*key, "matched", name)] = cross[name]
            values[(*key, "unmatched", name)] = everyone[name] - any_match[name]
    for group in GROUPS:
        for name in ARM_MEASURES:
            values[(TOTAL, group, name)] = sum_cells(values[(*k, group, name)] for k in keys)
    return values


def _arm_cells(counts: Counts, prefix: str) -> dict[str, Cell]:
    def c(name: str) -> Cell:
        return cell(counts, prefix + name)

    started, withdrawn, completed = c("started"), c("withdrawn"), c("completed")
    return {
        "started": started,
        "stayed": started - withdrawn,
        "achieved": c("achieved"),
        "leavers": completed + withdrawn,
    }


def _threshold(control: DisclosureMethod | None) -> int:
    return int(getattr(control, "threshold", 0) or 0)


@dataclass(frozen=True)
class _Comparison:
    """What is published of the comparison: ``values`` are the true cells, ``strata`` the
    stratum keys in order."""

    p: Published
    values: Mapping[CellId, Cell]
    strata: Sequence[StratumKey]
    control: DisclosureMethod | None

    def outcome(self, which: ComparisonOutcome) -> dict[str, Any]:
        x_name, n_name = OUTCOME_CELLS[which]
        used: list[dict[str, Any]] = []
        strata: list[Stratum] = []
        for key in self.strata:
            figures = self.published_stratum(key, x_name, n_name)
            if figures is None:
                continue
            x1, n1, x0, n0 = figures
            strata.append(Stratum(min(x1, n1), n1, min(x0, n0), n0))
            used.append(_stratum_entry(key, figures))
        rounded = self.control is not None
        return {
            "outcome": which,
            "definition": OUTCOME_DEFINITIONS[which],
            "matched": self.arm("matched", x_name, n_name),
            "unmatched": self.arm("unmatched", x_name, n_name),
            "stratified_difference": {
                **_difference_figures(strata),
                "strata_used": len(strata),
                "strata_with_both_groups": None if rounded else self.with_both(n_name),
                "matched_in_strata": sum(s.n1 for s in strata),
                "unmatched_in_strata": sum(s.n0 for s in strata),
            },
            "strata": used,
        }

    def published_stratum(
        self, key: StratumKey, x_name: str, n_name: str
    ) -> tuple[int, int, int, int] | None:
        """(x1, n1, x0, n0) as published, when all four are numbers, both groups have
        learners and, in rounded mode, at least the threshold each."""
        figures = [
            published_number(self.p, (*key, arm, name)) for arm in ARMS for name in (x_name, n_name)
        ]
        if any(f is None for f in figures):
            return None
        x1, n1, x0, n0 = (int(f) for f in figures if f is not None)
        rounded = self.control is not None
        if n1 <= 0 or n0 <= 0 or (rounded and min(n1, n0) < _threshold(self.control)):
            return None
        return x1, n1, x0, n0

    def with_both(self, n_name: str) -> int:
        """How many strata have learners in both groups (true counts)."""
        return sum(
            1
            for key in self.strata
            if all(self.values[(*key, arm, n_name)].count > 0 for arm in ARMS)
        )

    def arm(self, name: str, x_name: str, n_name: str) -> dict[str, Any]:
        x, n = (TOTAL, name, x_name), (TOTAL, name, n_name)
        rate = self.p.rate(x, (n,))
        xi, ni = published_number(self.p, x), published_number(self.p, n)
        interval = (
            wilson(xi, ni) if rate is not None and xi is not None and ni is not None else None
        )
        return {
            "n": self.p.display(n),
            "x": self.p.display(x),
            "rate": rate,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
        }


def _difference_figures(strata: Sequence[Stratum]) -> dict[str, float | None]:
    diff = stratified_difference(strata)
    return {
        "estimate": diff["estimate"] if diff else None,
        "ci_low": diff["ci_low"] if diff else None,
        "ci_high": diff["ci_high"] if diff else None,
    }


def _stratum_entry(key: StratumKey, figures: tuple[int, int, int, int]) -> dict[str, Any]:
    la, level, q = key
    x1, n1, x0, n0 = figures
    return {
        "local_authority": la,
        "level": level,
        "level_label": LEVEL_LABELS.get(level, level),
        "quarter": q,
        "matched": {"x": x1, "n": n1},
        "unmatched": {"x": x0, "n": n0},
    }
