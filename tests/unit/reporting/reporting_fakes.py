"""An in-memory projection database and its unit of work (the repository ports), for unit
tests of the projector.

Transactions are simulated: a unit of work reads the committed state and its writes are
applied only when its work returns, all at once, like a committed MongoDB transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self, TypeVar

from services.reporting.domain.projection import (
    AGGREGATES,
    AggregateKey,
    BatchOutcome,
    Counts,
    EnrolmentState,
    LoadedStates,
    MatchState,
    ParticipantState,
    StateKeys,
)
from services.reporting.repository import TopicPartition
from shared.positions import Position

T = TypeVar("T")
Pending = list[Callable[[], None]]


@dataclass
class InMemoryStore:
    """The committed read models of one generation."""

    enrolments: dict[str, EnrolmentState] = field(default_factory=dict)
    participants: dict[str, ParticipantState] = field(default_factory=dict)
    matches: dict[str, MatchState] = field(default_factory=dict)
    aggregates: dict[AggregateKey, Counts] = field(default_factory=dict)
    applied_ids: set[str] = field(default_factory=set)
    positions: dict[TopicPartition, Position] = field(default_factory=dict)
    transactions: int = 0
    fail_next_commits: int = 0

    def unit_of_work(self) -> FakeProjectionUnitOfWork:
        return FakeProjectionUnitOfWork(self)

    @property
    def stored_positions(self) -> dict[TopicPartition, int]:
        return {tp: p.offset for tp, p in self.positions.items()}


class FakeProjectionUnitOfWork:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store
        self._pending: Pending = []
        self.now = datetime.now(UTC)
        self.positions = _Positions(store, self._pending)
        self.applied_events = _AppliedEvents(store, self._pending)
        self.states = _States(store, self._pending)
        self.aggregates = _Aggregates(store, self._pending)

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        self._pending.clear()
        self.now = datetime.now(UTC)
        result = await work(self)
        if self._store.fail_next_commits:
            self._store.fail_next_commits -= 1
            raise ConnectionError("simulated lost connection at commit")
        for apply in self._pending:
            apply()
        self._pending.clear()
        self._store.transactions += 1
        return result


class _Repository:
    def __init__(self, store: InMemoryStore, pending: Pending) -> None:
        self._store = store
        self._pending = pending


class _Positions(_Repository):
    async def get(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Position]:
        return {tp: self._store.positions[tp] for tp in partitions if tp in self._store.positions}

    async def advance(self, positions: Mapping[TopicPartition, Position]) -> None:
        self._pending.append(lambda: self._store.positions.update(positions))


class _AppliedEvents(_Repository):
    async def known(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._store.applied_ids}

    async def add(self, ids: Sequence[str], at: datetime) -> None:
        self._pending.append(lambda: self._store.applied_ids.update(ids))


class _States(_Repository):
    async def load(self, keys: StateKeys) -> LoadedStates:
        s = self._store
        return LoadedStates(
            enrolments={k: v for k, v in s.enrolments.items() if v.learner in keys.learners},
            participants={k: v for k, v in s.participants.items() if k in keys.learners},
            matches={k: v for k, v in s.matches.items() if k in keys.match_ids},
        )

    async def save(self, outcome: BatchOutcome) -> None:
        def apply() -> None:
            self._store.enrolments.update(outcome.enrolments)
            self._store.participants.update(outcome.participants)
            self._store.matches.update(outcome.matches)

        self._pending.append(apply)


class _Aggregates(_Repository):
    async def add(self, outcome: BatchOutcome) -> None:
        def apply() -> None:
            aggregates = self._store.aggregates
            for key, delta in outcome.deltas.items():
                counts = aggregates.setdefault(key, dict.fromkeys(AGGREGATES[key[0]].fields, 0))
                for name, value in delta.items():
                    counts[name] += value
            for key in outcome.decremented:
                if key in aggregates and not any(aggregates[key].values()):
                    del aggregates[key]

        self._pending.append(apply)
