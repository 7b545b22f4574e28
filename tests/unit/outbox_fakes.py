"""An in-memory outbox behind ``shared.outbox.OutboxStore`` and a scripted log check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from shared.outbox import OutboxRow
from shared.positions import Anchor


class FakeOutboxStore:
    def __init__(self, rows: Sequence[OutboxRow] = ()) -> None:
        self.rows = list(rows)
        self.sent: dict[str, datetime] = {}
        self.parked: dict[str, list[tuple[str, str]]] = {}
        self.anchor_by_tp: dict[tuple[str, int], Anchor] = {}
        self.lease_owner: str | None = None
        self.requeued = 0

    async def pending(self, max_messages: int) -> list[OutboxRow]:
        out: list[OutboxRow] = []
        for row in sorted(self.rows, key=lambda r: r.seq):
            if row.id in self.sent:
                continue
            parked = frozenset(m for m, _ in self.parked.get(row.id, ()))
            out.append(replace(row, parked=parked))
            if sum(len(r.messages) for r in out) >= max_messages:
                break
        return out

    async def mark_sent(self, row_ids: Sequence[str]) -> None:
        for row_id in row_ids:
            self.sent[row_id] = datetime.now(UTC)

    async def mark_failed(self, row_ids: Sequence[str]) -> None:
        self.rows = [
            replace(r, attempts=r.attempts + 1) if r.id in row_ids else r for r in self.rows
        ]

    async def mark_parked(self, parked: Mapping[str, Sequence[tuple[str, str]]]) -> None:
        for row_id, messages in parked.items():
            self.parked.setdefault(row_id, []).extend(messages)

    async def backlog(self) -> int:
        return sum(len(r.messages) for r in self.rows if r.id not in self.sent)

    async def acquire_lease(self, owner: str, ttl_s: float) -> bool:
        if self.lease_owner in (None, owner):
            self.lease_owner = owner
            return True
        return False

    async def release_lease(self, owner: str) -> None:
        if self.lease_owner == owner:
            self.lease_owner = None

    async def anchors(self) -> list[Anchor]:
        return list(self.anchor_by_tp.values())

    async def save_anchors(self, delivered: Sequence[Anchor]) -> None:
        for anchor in delivered:
            tp = (anchor.topic, anchor.partition)
            since = self.anchor_by_tp[tp].log_since if tp in self.anchor_by_tp else anchor.log_since
            self.anchor_by_tp[tp] = replace(anchor, log_since=since)

    async def drop_anchors(self, anchors: Sequence[Anchor]) -> None:
        for anchor in anchors:
            self.anchor_by_tp.pop((anchor.topic, anchor.partition), None)

    async def requeue_sent_since(self, since: datetime) -> int:
        again = [row_id for row_id, at in self.sent.items() if at >= since]
        for row_id in again:
            del self.sent[row_id]
        self.requeued += len(again)
        return len(again)


class ScriptedLogCheck:
    """Says the logs of the given partitions were replaced, once asked."""

    def __init__(self) -> None:
        self.lost: set[tuple[str, int]] = set()
        self.checks = 0

    async def replaced(self, anchors: Sequence[Anchor]) -> list[Anchor]:
        self.checks += 1
        found = [a for a in anchors if (a.topic, a.partition) in self.lost]
        self.lost.clear()
        return found

    async def close(self) -> None:
        return None
