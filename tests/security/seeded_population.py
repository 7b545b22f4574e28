"""A seeded population of enrolments and matches, projected in memory, and a report
reader over it (the ``ReportReader`` port), for the differencing attacker's fast runs."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.projection import (
    AGGREGATES,
    AggregateKey,
    AggregateName,
    Counts,
    LoadedStates,
    MatchState,
    project_batch,
)
from shared.cloudevents import Event
from shared.contracts.enrolment import BreakInLearningStarted
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Ethnicity,
    Level,
    Outcome,
    Programme,
    WithdrawalReason,
)
from tests.factories.reporting import (
    Pair,
    accepted,
    assessed,
    completed,
    opted_in,
    ref_of,
    withdrawn,
)

LEVELS_OF: dict[Programme, tuple[Level | None, ...]] = {
    Programme.ESOL: (Level.PRE_ENTRY, Level.ENTRY_1, Level.ENTRY_2, Level.ENTRY_3),
    Programme.DIGITAL: (Level.ENTRY_3, Level.LEVEL_1),
    Programme.EMPLOYABILITY: (None, Level.ENTRY_3),
    Programme.FUNCTIONAL_MATHS: (Level.ENTRY_3, Level.LEVEL_1),
    Programme.FUNCTIONAL_ENGLISH: (Level.LEVEL_1,),
    Programme.VOCATIONAL: (Level.LEVEL_2,),
}
ESOL_NEXT = {
    Level.PRE_ENTRY: Level.ENTRY_1,
    Level.ENTRY_1: Level.ENTRY_2,
    Level.ENTRY_2: Level.ENTRY_3,
    Level.ENTRY_3: Level.LEVEL_1,
}


def seeded_events(
    seed: int,
    combined_authorities: Sequence[CombinedAuthority],
    months: Sequence[date],
    enrolments: int,
) -> list[Event]:
    """Enrolments spread unevenly (some boroughs and programmes small), with
    completions, withdrawals for several reasons, breaks, assessments, opt-ins and
    confirmed matches."""
    rng = random.Random(seed)
    las = [la for ca in combined_authorities for la in LOCAL_AUTHORITIES[ca]]
    la_weights = [rng.choice((1, 2, 5, 12)) for _ in las]
    programmes = list(Programme)
    prog_weights = [10 if p == Programme.ESOL else rng.choice((1, 2, 4)) for p in programmes]
    ethnicities = list(Ethnicity)
    reasons = [
        WithdrawalReason.HEALTH,
        WithdrawalReason.FINANCIAL,
        WithdrawalReason.OTHER_PERSONAL,
        WithdrawalReason.TRANSFERRED_NEW_PROVIDER,
        WithdrawalReason.OTHER,
        WithdrawalReason.NOT_KNOWN,
    ]
    events: list[Event] = []
    tail: list[Event] = []
    for _ in range(enrolments):
        la = rng.choices(las, la_weights)[0]
        programme = rng.choices(programmes, prog_weights)[0]
        level = rng.choice(LEVELS_OF[programme])
        start = rng.choice(months) + timedelta(days=rng.randrange(0, 27))
        ethnicity = rng.choice(ethnicities) if rng.random() < 0.9 else None
        e = accepted(la=la, programme=programme, level=level, start=start, ethnicity=ethnicity)
        events.append(e)
        fate = rng.random()
        if programme == Programme.ESOL and level in ESOL_NEXT and rng.random() < 0.5:
            reached = ESOL_NEXT[level] if rng.random() < 0.6 else level
            events.append(assessed(e, reached))
        if rng.random() < 0.3:
            events.append(opted_in(e))
            if rng.random() < 0.6:
                pair = Pair(e)
                events.append(pair.proposed())
                tail.append(pair.confirmed(rng.uniform(2, 40), cross_background=rng.random() < 0.6))
        if fate < 0.2:
            events.append(withdrawn(e, rng.choice(reasons)))
        elif fate < 0.75:
            events.append(
                completed(e, rng.choice((Outcome.ACHIEVED, Outcome.ACHIEVED, Outcome.PARTIAL)))
            )
        elif fate < 0.82:
            events.append(
                BreakInLearningStarted(**ref_of(e), break_started_on=start + timedelta(days=40))
            )
    return events + tail


class InMemoryReportReader:
    """The ``ReportReader`` port over aggregates projected in memory (numpy sums)."""

    def __init__(self, events: Sequence[Event]) -> None:
        outcome = project_batch(LoadedStates(), list(events))
        assert not outcome.failed, outcome.failed
        by_name: dict[AggregateName, list[tuple[tuple[str, ...], Counts]]] = {}
        deltas: dict[AggregateKey, Counts] = outcome.deltas
        for (name, key), counts in deltas.items():
            by_name.setdefault(name, []).append((key, counts))
        self._dims: dict[AggregateName, dict[str, np.ndarray]] = {}
        self._values: dict[AggregateName, np.ndarray] = {}
        for name, spec in AGGREGATES.items():
            rows = by_name.get(name, [])
            self._dims[name] = {
                d: np.array([k[i] for k, _ in rows], dtype=object) for i, d in enumerate(spec.dims)
            }
            self._values[name] = np.array(
                [[c.get(f, 0) for f in spec.fields] for _, c in rows]
                or np.zeros((0, len(spec.fields))),
                dtype=np.int64,
            ).reshape(len(rows), len(spec.fields))
        self._matches: list[MatchState] = list(outcome.matches.values())

    async def sum_counts(
        self, name: AggregateName, filters: Filters, group_by: str | None
    ) -> dict[str, Counts]:
        dims, values = self._dims[name], self._values[name]
        mask = np.isin(dims["combined_authority"], list(filters.combined_authorities))
        if filters.local_authority:
            mask &= dims["local_authority"] == filters.local_authority
        for dim, code in filters.selected().items():
            if dim in dims:
                mask &= dims[dim] == code
        if filters.month_from:
            mask &= dims["month"] >= filters.month_from
        if filters.month_to:
            mask &= dims["month"] <= filters.month_to
        fields = AGGREGATES[name].fields
        if not mask.any():
            return {}
        if group_by is None:
            total = values[mask].sum(axis=0)
            return {"": dict(zip(fields, (int(v) for v in total), strict=True))}
        out: dict[str, Counts] = {}
        groups = dims[group_by][mask]
        selected = values[mask]
        for group in set(groups.tolist()):
            total = selected[groups == group].sum(axis=0)
            out[str(group)] = dict(zip(fields, (int(v) for v in total), strict=True))
        return out

    async def wait_days(self, filters: Filters) -> list[float]:
        return [
            m.wait_days
            for m in self._matches
            if m.wait_days is not None
            and m.combined_authority in filters.combined_authorities
            and (not filters.local_authority or m.local_authority == filters.local_authority)
            and m.confirmed_month is not None
            and (not filters.month_from or m.confirmed_month >= filters.month_from)
            and (not filters.month_to or m.confirmed_month <= filters.month_to)
        ]
