"""Assigning the whole pool at once (an optimal assignment, with the greedy
first-come baseline for comparison), and when a pool is worth a run."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from services.matching.domain.constraints import feasible
from services.matching.domain.profiles import ParticipantView, VolunteerView
from services.matching.domain.scoring import ScoreBreakdown, score, score_value, waiting_bonus
from services.matching.domain.weights import Weights


@dataclass(frozen=True)
class Proposal:
    volunteer_id: str
    participant: str
    breakdown: ScoreBreakdown
    priority: float
    """The waiting bonus that was added to the score for the optimiser's objective."""

    @property
    def score(self) -> float:
        return self.breakdown.total

    @property
    def objective(self) -> float:
        return self.breakdown.total + self.priority


def _ordered(
    volunteers: Iterable[VolunteerView], participants: Iterable[ParticipantView]
) -> tuple[list[VolunteerView], list[ParticipantView]]:
    """Stable input order: results never depend on the order rows came from the DB."""
    vols = sorted(volunteers, key=lambda v: v.volunteer_id)
    parts = sorted(participants, key=lambda p: (p.waiting_since, p.participant))
    if len({v.volunteer_id for v in vols}) != len(vols):
        raise ValueError("duplicate volunteer ids in the pool")
    if len({p.participant for p in parts}) != len(parts):
        raise ValueError("duplicate participants in the pool")
    return vols, parts


def _candidates(vols: Sequence[VolunteerView]) -> Callable[[ParticipantView], list[int]]:
    """Volunteer indexes sharing at least one slot with a participant (a necessary
    condition of feasibility), in index order: prunes most pairs before scoring."""
    by_slot: dict[str, list[int]] = {}
    for vi, v in enumerate(vols):
        for slot in v.availability:
            by_slot.setdefault(slot, []).append(vi)

    def candidates(p: ParticipantView) -> list[int]:
        found: set[int] = set()
        for slot in p.availability:
            found.update(by_slot.get(slot, ()))
        return sorted(found)

    return candidates


def optimal_assignment(
    volunteers: Iterable[VolunteerView],
    participants: Iterable[ParticipantView],
    weights: Weights,
    *,
    today: date,
    now: datetime,
) -> list[Proposal]:
    """Whole-pool assignment maximising total (score + waiting priority).

    Volunteers are expanded into one column per free capacity slot, and every
    participant gets a private "stay waiting" column worth 0, so the solver maximises
    total weight (not merely the number of pairs) and infeasible pairs (-inf) are never
    chosen. Deterministic: inputs are put in a stable order first and the solver is
    deterministic for a given matrix.
    """
    vols, parts = _ordered(volunteers, participants)
    rows = _feasible_rows(vols, parts, weights, today=today, now=now)
    if not rows:
        return []
    columns, width = _columns(vols, rows)
    row_idx, col_idx = linear_sum_assignment(_matrix(rows, columns, width), maximize=True)
    owner = {c: vi for vi, cols in columns.items() for c in cols}
    proposals: list[Proposal] = []
    for r, c in zip(row_idx.tolist(), col_idx.tolist(), strict=True):
        if c >= width:
            continue
        p, bonus, _ = rows[r]
        v = vols[owner[c]]
        proposals.append(Proposal(v.volunteer_id, p.participant, score(v, p, weights), bonus))
    return proposals


_Row = tuple[ParticipantView, float, list[tuple[int, float]]]
"""A participant, their waiting bonus, and (volunteer index, score) of each feasible
volunteer."""


def _feasible_rows(
    vols: Sequence[VolunteerView],
    parts: Sequence[ParticipantView],
    weights: Weights,
    *,
    today: date,
    now: datetime,
) -> list[_Row]:
    """A row per participant with at least one feasible volunteer, in ``parts`` order."""
    candidates = _candidates(vols)
    rows: list[_Row] = []
    for p in parts:
        options = [
            (vi, score_value(vols[vi], p, weights))
            for vi in candidates(p)
            if feasible(vols[vi], p, today)
        ]
        if options:
            rows.append((p, waiting_bonus(p, now, weights), options))
    return rows


def _columns(vols: Sequence[VolunteerView], rows: Sequence[_Row]) -> tuple[dict[int, range], int]:
    """Each volunteer's columns (one per place it can fill) and the total width."""
    demand: dict[int, int] = {}
    for _, _, options in rows:
        for vi, _ in options:
            demand[vi] = demand.get(vi, 0) + 1
    # A volunteer needs no more columns than participants who could take them.
    columns: dict[int, range] = {}
    width = 0
    for vi in sorted(demand):
        n = min(vols[vi].free_capacity, demand[vi])
        columns[vi] = range(width, width + n)
        width += n
    return columns, width


def _matrix(rows: Sequence[_Row], columns: dict[int, range], width: int) -> npt.NDArray[np.float64]:
    """The weights to maximise: a row's value in each of its volunteers' columns, 0 in
    its own "stay waiting" column, -inf (never chosen) elsewhere."""
    matrix = np.full((len(rows), width + len(rows)), -np.inf)
    for r, (_, bonus, options) in enumerate(rows):
        for vi, value in options:
            cols = columns[vi]
            matrix[r, cols.start : cols.stop] = value + bonus
        matrix[r, width + r] = 0.0
    return matrix


def greedy_assignment(
    volunteers: Iterable[VolunteerView],
    participants: Iterable[ParticipantView],
    weights: Weights,
    *,
    today: date,
    now: datetime,
) -> list[Proposal]:
    """The baseline: first come, first served; each participant in waiting order takes
    the best-scoring feasible volunteer still free (ties: lowest volunteer id)."""
    vols, parts = _ordered(volunteers, participants)
    candidates = _candidates(vols)
    free = [v.free_capacity for v in vols]
    proposals: list[Proposal] = []
    for p in parts:
        best: tuple[float, int] | None = None
        for vi in candidates(p):
            if free[vi] <= 0 or not feasible(vols[vi], p, today):
                continue
            value = score_value(vols[vi], p, weights)
            if best is None or value > best[0]:
                best = (value, vi)
        if best is not None:
            vi = best[1]
            free[vi] -= 1
            proposals.append(
                Proposal(
                    vols[vi].volunteer_id,
                    p.participant,
                    score(vols[vi], p, weights),
                    waiting_bonus(p, now, weights),
                )
            )
    return proposals


def total_score(proposals: Iterable[Proposal]) -> float:
    return math.fsum(p.score for p in proposals)


def total_objective(proposals: Iterable[Proposal]) -> float:
    return math.fsum(p.objective for p in proposals)


@dataclass(frozen=True)
class BatchPolicy:
    """When a combined authority's pool is worth an optimiser run."""

    threshold: int
    window: timedelta

    def should_run(
        self, *, now: datetime, last_run_at: datetime | None, waiting: int, arrived: int
    ) -> bool:
        """``arrived``: people who entered the pool since the last run."""
        if waiting <= 0:
            return False
        if arrived >= self.threshold:
            return True
        return last_run_at is None or now - last_run_at >= self.window
