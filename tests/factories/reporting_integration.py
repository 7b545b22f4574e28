"""The ``IntegrationReader`` port over events projected in memory (no database), for
unit tests and for computing the figures the integration and e2e tests expect."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.projection import (
    AGGREGATES,
    NOT_STATED,
    AggregateName,
    Counts,
    LoadedStates,
    project_batch,
)
from shared.cloudevents import Event
from shared.contracts.reference import AgeBand, Level, Outcome, Programme, Sex
from tests.factories.reporting import (
    MANCHESTER,
    OLDHAM,
    Pair,
    accepted,
    assessed,
    completed,
    opted_in,
    withdrawn,
)


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
            if any(doc.get(dim, code) != code for dim, code in filters.selected().items()):
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


def integration_scenario(year: int) -> list[Event]:
    """Greater Manchester in the first quarter of ``year`` (tests of issue 16's reports):
    five Manchester ESOL learners (two with cross-background matches that keep meeting,
    one with a match that bridges nothing, two without), adult-skills and digital
    learners in Manchester and Oldham."""
    jan = date(year, 1, 10)
    e1, e2, e3, e4, e5 = (accepted(la=MANCHESTER, level=Level.ENTRY_1, start=jan) for _ in range(5))
    maths = accepted(la=MANCHESTER, programme=Programme.FUNCTIONAL_MATHS, start=jan)
    d1, d2 = (
        accepted(la=OLDHAM, programme=Programme.DIGITAL, level=Level.LEVEL_1, start=jan)
        for _ in range(2)
    )
    p1, p2, p3 = Pair(e1), Pair(e2), Pair(e3)
    return [
        e1, e2, e3, e4, e5, maths, d1, d2,
        completed(e1, Outcome.ACHIEVED, Level.ENTRY_2),  # progressed on day 180
        completed(e2, Outcome.ACHIEVED, Level.ENTRY_2),
        withdrawn(e3),
        assessed(e4, Level.ENTRY_3),  # progressed on day 60
        withdrawn(e5),
        completed(maths),
        completed(d1),
        withdrawn(d2),
        opted_in(e1, sex=Sex.FEMALE, age_band=AgeBand.AGE_25_34),
        opted_in(e2, sex=Sex.MALE, age_band=AgeBand.AGE_35_49),
        opted_in(e3, sex=Sex.FEMALE, age_band=AgeBand.AGE_25_34),
        opted_in(e4),
        p1.proposed(), p1.confirmed(3, cross_background=True),
        p1.checked_in(3, 20), p1.checked_in(3, 40), p1.checked_in(3, 170),
        p2.proposed(), p2.confirmed(3, cross_background=True), p2.checked_in(3, 30),
        p3.proposed(), p3.confirmed(5, cross_background=False), p3.checked_in(5, 30),
    ]  # fmt: skip
