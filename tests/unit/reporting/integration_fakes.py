"""The ``IntegrationReader`` port over events projected in memory (no database), for
unit tests and for computing the figures the e2e dashboard test expects."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from services.reporting.domain.projection import (
    AGGREGATES,
    NOT_STATED,
    AggregateName,
    Counts,
    LoadedStates,
    project_batch,
)
from services.reporting.domain.reports import Filters
from shared.cloudevents import Event


class InMemoryIntegrationReader:
    def __init__(self, events: Sequence[Event]) -> None:
        out = project_batch(LoadedStates(), list(events))
        assert not out.failed, out.failed
        self._deltas = out.deltas
        self._enrolments = list(out.enrolments.values())
        self._participants = list(out.participants.values())

    @staticmethod
    def _in_scope(filters: Filters, ca: str | None, la: str | None, month: str | None) -> bool:
        if ca not in filters.combined_authorities:
            return False
        if filters.local_authority and la != filters.local_authority:
            return False
        if month is None:
            return False
        if filters.month_from and month < filters.month_from:
            return False
        return not (filters.month_to and month > filters.month_to)

    async def sum_grouped(
        self, name: AggregateName, filters: Filters, dims: Sequence[str]
    ) -> dict[tuple[str, ...], Counts]:
        spec = AGGREGATES[name]
        out: dict[tuple[str, ...], Counts] = {}
        for (agg, key), counts in self._deltas.items():
            if agg != name:
                continue
            doc = dict(zip(spec.dims, key, strict=True))
            if not self._in_scope(
                filters, doc["combined_authority"], doc["local_authority"], doc["month"]
            ):
                continue
            if "programme" in doc and filters.programme and doc["programme"] != filters.programme:
                continue
            if "level" in doc and filters.level and doc["level"] != filters.level:
                continue
            group = tuple(doc[d] for d in dims)
            target = out.setdefault(group, {f: 0 for f in spec.fields})
            for f, v in counts.items():
                target[f] += v
        return out

    async def esol_progress_days(self, filters: Filters) -> list[tuple[str, str, float]]:
        return [
            (
                e.local_authority,
                e.start_month,
                float(
                    (date.fromisoformat(e.progressed_on) - date.fromisoformat(e.start_date)).days
                ),
            )
            for e in self._enrolments
            if e.programme == "esol"
            and e.accepted
            and e.progressed_on
            and e.start_date
            and e.start_month
            and self._in_scope(filters, e.combined_authority, e.local_authority, e.start_month)
        ]

    async def first_waits(self, filters: Filters, by: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for p in self._participants:
            if not p.opted_in or p.first_wait_days is None:
                continue
            if not self._in_scope(
                filters, p.combined_authority, p.local_authority, p.opted_in_month
            ):
                continue
            out.setdefault(getattr(p, by) or NOT_STATED, []).append(p.first_wait_days)
        return out
