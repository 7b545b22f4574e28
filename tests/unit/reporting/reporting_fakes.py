"""An in-memory ProjectionStore (the repository port), for unit tests of the projector.

Transactions are simulated: a unit of work sees the committed state and its writes are
applied only when it returns, all at once, like a committed MongoDB transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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
from services.reporting.repository import ProjectionTx, TopicPartition
from shared.positions import Position

T = TypeVar("T")


@dataclass
class InMemoryStore:
    enrolments: dict[str, EnrolmentState] = field(default_factory=dict)
    participants: dict[str, ParticipantState] = field(default_factory=dict)
    matches: dict[str, MatchState] = field(default_factory=dict)
    aggregates: dict[AggregateKey, Counts] = field(default_factory=dict)
    applied_ids: set[str] = field(default_factory=set)
    positions: dict[TopicPartition, Position] = field(default_factory=dict)
    transactions: int = 0
    fail_next_commits: int = 0

    async def run(self, work: Callable[[ProjectionTx], Awaitable[T]]) -> T:
        tx = _Tx(self)
        result = await work(tx)
        if self.fail_next_commits:
            self.fail_next_commits -= 1
            raise ConnectionError("simulated lost connection at commit")
        tx.commit()
        self.transactions += 1
        return result

    @property
    def stored_positions(self) -> dict[TopicPartition, int]:
        return {tp: p.offset for tp, p in self.positions.items()}

    async def read_positions(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, Position]:
        return {tp: self.positions[tp] for tp in partitions if tp in self.positions}

    async def read_known_event_ids(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self.applied_ids}


class _Tx:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store
        self._pending: list[Callable[[], None]] = []

    async def positions(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, Position]:
        return await self._store.read_positions(partitions)

    async def known_event_ids(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._store.applied_ids}

    async def load(self, keys: StateKeys) -> LoadedStates:
        s = self._store
        return LoadedStates(
            enrolments={k: v for k, v in s.enrolments.items() if v.learner in keys.learners},
            participants={k: v for k, v in s.participants.items() if k in keys.learners},
            matches={k: v for k, v in s.matches.items() if k in keys.match_ids},
        )

    async def write(
        self,
        outcome: BatchOutcome,
        positions: Mapping[TopicPartition, Position],
        event_ids: Sequence[str],
    ) -> None:
        def apply() -> None:
            s = self._store
            s.enrolments.update(outcome.enrolments)
            s.participants.update(outcome.participants)
            s.matches.update(outcome.matches)
            for key, delta in outcome.deltas.items():
                counts = s.aggregates.setdefault(key, dict.fromkeys(AGGREGATES[key[0]].fields, 0))
                for name, value in delta.items():
                    counts[name] += value
            for key in outcome.decremented:
                if key in s.aggregates and not any(s.aggregates[key].values()):
                    del s.aggregates[key]
            s.applied_ids.update(event_ids)
            s.positions.update(positions)

        self._pending.append(apply)

    def commit(self) -> None:
        for apply in self._pending:
            apply()
