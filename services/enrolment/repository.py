"""MongoDB adapters of the enrolment service (its own database, ``cg_enrolment``).

Collections: ``enrolments`` (state, one document per enrolment, ``_id`` = enrolment id),
``outbox`` (events waiting for / done with publication), ``outbox_lease`` (which replica
relays), ``providers`` (who may submit), ``api_keys`` (hashed, via ``shared.auth``).

A state change and the events announcing it are written in ONE transaction, so an
event is published if and only if its change committed (transactional outbox). Writes
are batched: a whole intake batch is one ``insert_many`` per collection, and an outbox
row holds the events of one transaction (up to ``max_messages_per_row``), so the relay
marks a whole batch sent with a handful of writes (SecantusDB writes ~1000 docs/s).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.enrolment.domain import Enrolment, HistoryEntry, Lifecycle, Provider, Status
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import EnrolmentSubmission
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Level,
    Outcome,
    WithdrawalReason,
)

logger = logging.getLogger(__name__)

DUPLICATE_KEY = 11000


class AlreadyExists(Exception):
    """An enrolment id in an insert already exists (a concurrent submission won)."""


class VersionConflict(Exception):
    """The enrolment changed since it was read (a concurrent progress update won)."""


@dataclass(frozen=True)
class OutboxMessage:
    """One event waiting to be published. ``id`` is fixed when the event is written and is
    the CloudEvent ``ce_id``, so a re-publish after a crash is deduplicated downstream."""

    id: str
    topic: str
    key: str
    headers: dict[str, str]
    body: str

    @classmethod
    def of(cls, event: CloudEvent[Event], *, topic: str, key: str) -> OutboxMessage:
        return cls(
            id=event.id,
            topic=topic,
            key=key,
            headers=event.headers(),
            body=event.body().decode(),
        )


@dataclass(frozen=True)
class OutboxRow:
    """The events of one transaction (or part of one), in the order they must be sent."""

    id: str
    seq: int
    messages: tuple[OutboxMessage, ...]


# ------------------------------------------------------------------------------ protocols


class EnrolmentRepository(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def get(self, enrolment_id: str) -> Enrolment | None: ...

    async def fingerprints(self, enrolment_ids: Sequence[str]) -> dict[str, str]:
        """Existing ids among ``enrolment_ids`` → their submission fingerprints."""
        ...

    async def insert(
        self, enrolments: Sequence[Enrolment], outbox: Sequence[OutboxMessage]
    ) -> None:
        """New enrolments and their events in one transaction (raises AlreadyExists)."""
        ...

    async def save_transition(
        self, enrolment: Enrolment, expected_version: int, outbox: Sequence[OutboxMessage]
    ) -> None:
        """The enrolment's new state and its event in one transaction (raises
        VersionConflict when someone else changed it first)."""
        ...


class OutboxStore(Protocol):
    async def pending(self, max_messages: int) -> list[OutboxRow]:
        """Unsent rows in commit order, until about ``max_messages`` messages."""
        ...

    async def mark_sent(self, row_ids: Sequence[str]) -> None: ...

    async def mark_parked(self, row_ids: Sequence[str]) -> None:
        """Take rows that can never be published out of the queue (kept for inspection)."""
        ...

    async def backlog(self) -> int:
        """Messages committed but not yet published."""
        ...

    async def acquire_lease(self, owner: str, ttl_s: float) -> bool: ...

    async def release_lease(self, owner: str) -> None: ...


class ProviderDirectory(Protocol):
    async def by_ukprns(self, ukprns: Sequence[str]) -> dict[str, Provider]: ...


# ---------------------------------------------------------------------------- documents


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _from_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def enrolment_document(e: Enrolment, now: datetime) -> dict[str, Any]:
    lc = e.lifecycle
    s = e.submission
    return {
        "_id": e.enrolment_id,
        "provider_id": e.provider_id,
        "provider_ukprn": e.provider_ukprn,
        "learner": e.learner,
        "combined_authority": s.combined_authority.value,
        "local_authority": s.local_authority,
        "programme": s.programme.value,
        "submission": s.model_dump(mode="json"),
        "fingerprint": e.fingerprint,
        "age_band": e.age_band.value,
        "status": lc.status.value,
        "completion_status": int(lc.completion_status),
        "lifecycle": {
            "status_since": _day(lc.status_since),
            "outcome": int(lc.outcome) if lc.outcome is not None else None,
            "level_reached": lc.level_reached.value if lc.level_reached else None,
            "ended_on": _day(lc.ended_on),
            "withdrawal_reason": int(lc.withdrawal_reason)
            if lc.withdrawal_reason is not None
            else None,
            "expected_return_on": _day(lc.expected_return_on),
        },
        "accepted_at": e.accepted_at,
        "updated_at": now,
        "version": e.version,
        "applied_progress": list(e.applied_progress),
        "history": [
            {"kind": h.kind, "on": h.on.isoformat(), "status": h.status.value, "at": h.recorded_at}
            for h in e.history
        ],
    }


def enrolment_from_document(doc: dict[str, Any]) -> Enrolment:
    lc = doc["lifecycle"]
    return Enrolment(
        enrolment_id=doc["_id"],
        provider_id=doc["provider_id"],
        provider_ukprn=doc["provider_ukprn"],
        learner=doc["learner"],
        submission=EnrolmentSubmission.model_validate(doc["submission"]),
        fingerprint=doc["fingerprint"],
        age_band=AgeBand(doc["age_band"]),
        lifecycle=Lifecycle(
            status=Status(doc["status"]),
            status_since=date.fromisoformat(lc["status_since"]),
            outcome=Outcome(lc["outcome"]) if lc.get("outcome") is not None else None,
            level_reached=Level(lc["level_reached"]) if lc.get("level_reached") else None,
            ended_on=_from_day(lc.get("ended_on")),
            withdrawal_reason=WithdrawalReason(lc["withdrawal_reason"])
            if lc.get("withdrawal_reason") is not None
            else None,
            expected_return_on=_from_day(lc.get("expected_return_on")),
        ),
        accepted_at=doc["accepted_at"],
        version=doc["version"],
        applied_progress=tuple(doc.get("applied_progress", ())),
        history=tuple(
            HistoryEntry(h["kind"], date.fromisoformat(h["on"]), Status(h["status"]), h["at"])
            for h in doc.get("history", ())
        ),
    )


def _message_document(m: OutboxMessage) -> dict[str, Any]:
    return {"id": m.id, "topic": m.topic, "key": m.key, "headers": m.headers, "body": m.body}


def _chunks(messages: Sequence[OutboxMessage], size: int) -> list[Sequence[OutboxMessage]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def outbox_row_from_document(doc: dict[str, Any]) -> OutboxRow:
    return OutboxRow(
        id=doc["_id"],
        seq=doc["seq"],
        messages=tuple(
            OutboxMessage(
                id=m["id"],
                topic=m["topic"],
                key=m["key"],
                headers=dict(m["headers"]),
                body=m["body"],
            )
            for m in doc["messages"]
        ),
    )


class _Sequencer:
    """Outbox order: microseconds since the epoch, strictly increasing in this process
    (rows of one transaction keep their order; per-key order is what Kafka needs)."""

    def __init__(self) -> None:
        self._last = 0

    def take(self, n: int, now: datetime) -> range:
        start = max(int(now.timestamp() * 1_000_000), self._last + 1)
        self._last = start + n - 1
        return range(start, start + n)


# -------------------------------------------------------------------------- Mongo adapters


class MongoEnrolmentRepository:
    def __init__(
        self,
        client: AsyncMongoClient[Any],
        db: AsyncDatabase[Any],
        *,
        max_messages_per_row: int = 200,
    ) -> None:
        self._client = client
        self._enrolments = db["enrolments"]
        self._outbox = db["outbox"]
        self._per_row = max_messages_per_row
        self._seq = _Sequencer()

    async def ensure_indexes(self) -> None:
        await self._enrolments.create_index([("provider_id", ASCENDING)])
        await self._enrolments.create_index([("learner", ASCENDING)])

    async def get(self, enrolment_id: str) -> Enrolment | None:
        doc = await self._enrolments.find_one({"_id": enrolment_id})
        return enrolment_from_document(doc) if doc else None

    async def fingerprints(self, enrolment_ids: Sequence[str]) -> dict[str, str]:
        if not enrolment_ids:
            return {}
        cursor = self._enrolments.find(
            {"_id": {"$in": list(set(enrolment_ids))}}, {"fingerprint": 1}
        )
        return {doc["_id"]: doc["fingerprint"] async for doc in cursor}

    def _outbox_docs(
        self, messages: Sequence[OutboxMessage], now: datetime
    ) -> list[dict[str, Any]]:
        chunks = _chunks(messages, self._per_row)
        seqs = self._seq.take(len(chunks), now)
        return [
            {
                "_id": str(uuid.uuid4()),
                "seq": seq,
                "messages": [_message_document(m) for m in chunk],
                "count": len(chunk),
                "pending": True,
                "created_at": now,
                "sent_at": None,
            }
            for seq, chunk in zip(seqs, chunks, strict=True)
        ]

    async def insert(
        self, enrolments: Sequence[Enrolment], outbox: Sequence[OutboxMessage]
    ) -> None:
        if not enrolments and not outbox:
            return
        now = datetime.now(UTC)
        docs = [enrolment_document(e, now) for e in enrolments]
        rows = self._outbox_docs(outbox, now)

        async def write(session: AsyncClientSession) -> None:
            if docs:
                await self._enrolments.insert_many(docs, ordered=True, session=session)
            if rows:
                await self._outbox.insert_many(rows, ordered=True, session=session)

        try:
            async with self._client.start_session() as session:
                await session.with_transaction(write)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if _is_duplicate_key(exc):
                raise AlreadyExists(str(exc)) from exc
            raise

    async def save_transition(
        self, enrolment: Enrolment, expected_version: int, outbox: Sequence[OutboxMessage]
    ) -> None:
        now = datetime.now(UTC)
        doc = enrolment_document(enrolment, now)
        doc["version"] = expected_version + 1
        doc.pop("_id")
        doc.pop("accepted_at")
        rows = self._outbox_docs(outbox, now)

        async def write(session: AsyncClientSession) -> None:
            result = await self._enrolments.update_one(
                {"_id": enrolment.enrolment_id, "version": expected_version},
                {"$set": doc},
                session=session,
            )
            if result.matched_count != 1:
                raise VersionConflict(enrolment.enrolment_id)
            if rows:
                await self._outbox.insert_many(rows, ordered=True, session=session)

        async with self._client.start_session() as session:
            await session.with_transaction(write)


def _is_duplicate_key(exc: Exception) -> bool:
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == DUPLICATE_KEY for e in exc.details.get("writeErrors", []))
    return False


class MongoOutboxStore:
    LEASE_ID = "outbox-relay"

    def __init__(self, db: AsyncDatabase[Any], *, retention_s: int) -> None:
        self._outbox = db["outbox"]
        self._lease = db["outbox_lease"]
        self._retention_s = retention_s

    async def ensure_indexes(self) -> None:
        await self._outbox.create_index([("pending", ASCENDING), ("seq", ASCENDING)])
        await self._outbox.create_index("sent_at", expireAfterSeconds=self._retention_s)

    async def pending(self, max_messages: int) -> list[OutboxRow]:
        # First the sizes only (small documents), then just the rows this round takes.
        chosen: list[str] = []
        total = 0
        sizes = (
            self._outbox.find({"pending": True}, {"count": 1})
            .sort([("seq", ASCENDING)])
            .limit(max_messages)
        )
        async for doc in sizes:
            chosen.append(doc["_id"])
            total += int(doc.get("count", 1))
            if total >= max_messages:
                break
        await sizes.close()
        if not chosen:
            return []
        docs = self._outbox.find({"_id": {"$in": chosen}, "pending": True})
        rows = [outbox_row_from_document(doc) async for doc in docs]
        return sorted(rows, key=lambda row: row.seq)

    async def mark_sent(self, row_ids: Sequence[str]) -> None:
        if row_ids:
            await self._outbox.update_many(
                {"_id": {"$in": list(row_ids)}},
                {"$set": {"pending": False, "sent_at": datetime.now(UTC)}},
            )

    async def mark_parked(self, row_ids: Sequence[str]) -> None:
        if row_ids:
            await self._outbox.update_many(
                {"_id": {"$in": list(row_ids)}},
                {"$set": {"pending": False, "parked_at": datetime.now(UTC)}},
            )

    async def backlog(self) -> int:
        cursor = await self._outbox.aggregate(
            [{"$match": {"pending": True}}, {"$group": {"_id": None, "n": {"$sum": "$count"}}}]
        )
        docs = await cursor.to_list()
        return int(docs[0]["n"]) if docs else 0

    async def acquire_lease(self, owner: str, ttl_s: float) -> bool:
        """Leadership among replicas: one relay publishes at a time, another takes over
        when the lease expires (a crashed replica)."""
        now = datetime.now(UTC)
        try:
            await self._lease.find_one_and_update(
                {"_id": self.LEASE_ID, "$or": [{"owner": owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": owner, "expires_at": now + timedelta(seconds=ttl_s)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_lease(self, owner: str) -> None:
        await self._lease.delete_one({"_id": self.LEASE_ID, "owner": owner})


class MongoProviderDirectory:
    """Providers and their contracts (combined authorities). Written by the admin CLI."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._providers = db["providers"]

    async def ensure_indexes(self) -> None:
        await self._providers.create_index("ukprn", unique=True)

    async def by_ukprns(self, ukprns: Sequence[str]) -> dict[str, Provider]:
        if not ukprns:
            return {}
        cursor = self._providers.find({"ukprn": {"$in": list(set(ukprns))}, "active": True})
        return {d["ukprn"]: provider_from_document(d) async for d in cursor}

    async def get(self, ukprn: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self._providers.find_one({"ukprn": ukprn})
        return doc

    async def register(
        self, *, name: str, ukprn: str, combined_authorities: Sequence[CombinedAuthority]
    ) -> Provider:
        """Insert a new provider (raises DuplicateKeyError if the UKPRN is known)."""
        now = datetime.now(UTC)
        doc = {
            "_id": provider_id_for(ukprn),
            "ukprn": ukprn,
            "name": name,
            "combined_authorities": [ca.value for ca in combined_authorities],
            "active": True,
            "registered_at": now,
            "updated_at": now,
        }
        await self._providers.insert_one(doc)
        return provider_from_document(doc)

    async def upsert(
        self, *, name: str, ukprn: str, combined_authorities: Sequence[CombinedAuthority]
    ) -> Provider:
        now = datetime.now(UTC)
        await self._providers.update_one(
            {"_id": provider_id_for(ukprn)},
            {
                "$set": {
                    "ukprn": ukprn,
                    "name": name,
                    "combined_authorities": [ca.value for ca in combined_authorities],
                    "active": True,
                    "updated_at": now,
                },
                "$setOnInsert": {"registered_at": now},
            },
            upsert=True,
        )
        doc = await self._providers.find_one({"_id": provider_id_for(ukprn)})
        assert doc is not None
        return provider_from_document(doc)


def provider_id_for(ukprn: str) -> str:
    return f"provider:{ukprn}"


def provider_from_document(doc: dict[str, Any]) -> Provider:
    return Provider(
        provider_id=doc["_id"],
        ukprn=doc["ukprn"],
        combined_authorities=frozenset(CombinedAuthority(c) for c in doc["combined_authorities"]),
    )
