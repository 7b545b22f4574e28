"""MongoDB adapters of the enrolment service (its own database, ``cg_enrolment``).

Collections: ``enrolments`` (state, one document per enrolment, ``_id`` = enrolment id),
the outbox (``shared.outbox``), ``providers`` (who may submit), ``api_keys`` (hashed, via
``shared.auth``).

The enrolment repository only reads and writes, in the session of the unit of work it
is bound to (``services.enrolment.unit_of_work``), which owns the transaction and writes
the events announcing a change to the outbox in it (transactional outbox). Writes are
batched: a whole intake batch is one ``insert_many`` per collection, and an outbox row
holds the events of one transaction (up to ``max_messages_per_row``), so the relay marks
a whole batch sent with a handful of writes (SecantusDB writes ~1000 docs/s).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import TypeAdapter
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.enrolment.domain import Enrolment, HistoryEntry, Lifecycle, Provider
from shared.contracts.enrolment import EnrolmentSubmission
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
)

logger = logging.getLogger(__name__)


class AlreadyExists(Exception):
    """An enrolment id in an insert already exists (a concurrent submission won)."""


class VersionConflict(Exception):
    """The enrolment changed since it was read (a concurrent progress update won)."""


# ------------------------------------------------------------------------------ protocols


class Transaction(Protocol):
    """What a repository needs of the unit of work it is bound to."""

    @property
    def session(self) -> AsyncClientSession | None: ...

    @property
    def now(self) -> datetime: ...


class EnrolmentRepository(Protocol):
    """Enrolments read and written in a unit of work's transaction (never its own)."""

    async def get(self, enrolment_id: str) -> Enrolment | None: ...

    async def get_many(self, enrolment_ids: Sequence[str]) -> dict[str, Enrolment]: ...

    async def fingerprints(self, enrolment_ids: Sequence[str]) -> dict[str, str]:
        """Existing ids among ``enrolment_ids`` → their submission fingerprints."""
        ...

    async def add(self, enrolments: Sequence[Enrolment]) -> None:
        """New enrolments, one bulk insert (a taken id: AlreadyExists from the unit of
        work's ``run``, the transaction aborted)."""
        ...

    async def save(self, enrolment: Enrolment, expected_version: int) -> None:
        """The enrolment's new state (raises VersionConflict when someone else changed it
        since it was read at ``expected_version``)."""
        ...

    async def save_many(self, changed: Sequence[tuple[Enrolment, int]]) -> None:
        """Changed enrolments, each with the version it was read at, one bulk write
        (raises VersionConflict)."""
        ...


class SubmissionSealer(Protocol):
    """Personal submission fields sealed at rest (``services.enrolment.privacy``)."""

    async def seal_documents(self, docs: Sequence[dict[str, Any]]) -> None: ...

    async def open_documents(self, docs: Sequence[dict[str, Any]]) -> None: ...


class ProviderDirectory(Protocol):
    async def by_ukprns(self, ukprns: Sequence[str]) -> dict[str, Provider]: ...


# ---------------------------------------------------------------------------- documents


# The lifecycle document is the Lifecycle's fields but ``status`` (kept at the top level,
# where queries use it), dates as ISO strings and codes as their values.
_LIFECYCLE = TypeAdapter(Lifecycle)
_HISTORY = TypeAdapter(HistoryEntry)


def _history_document(entry: HistoryEntry) -> dict[str, Any]:
    doc = _HISTORY.dump_python(entry, mode="json", exclude={"recorded_at"})
    return {**doc, "at": entry.recorded_at}  # a BSON date, not a string


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
        "lifecycle": _LIFECYCLE.dump_python(lc, mode="json", exclude={"status"}),
        "accepted_at": e.accepted_at,
        "updated_at": now,
        "version": e.version,
        "applied_progress": list(e.applied_progress),
        "history": [_history_document(h) for h in e.history],
    }


def enrolment_from_document(doc: dict[str, Any]) -> Enrolment:
    return Enrolment(
        enrolment_id=doc["_id"],
        provider_id=doc["provider_id"],
        provider_ukprn=doc["provider_ukprn"],
        learner=doc["learner"],
        submission=EnrolmentSubmission.model_validate(doc["submission"]),
        fingerprint=doc["fingerprint"],
        age_band=AgeBand(doc["age_band"]),
        lifecycle=_LIFECYCLE.validate_python({**doc["lifecycle"], "status": doc["status"]}),
        accepted_at=doc["accepted_at"],
        version=doc["version"],
        applied_progress=tuple(doc.get("applied_progress", ())),
        history=tuple(
            _HISTORY.validate_python({**h, "recorded_at": h["at"]}) for h in doc.get("history", ())
        ),
    )


# -------------------------------------------------------------------------- Mongo adapters


async def ensure_enrolment_indexes(db: AsyncDatabase[Any]) -> None:
    enrolments = db["enrolments"]
    await enrolments.create_index([("provider_id", ASCENDING)])
    await enrolments.create_index([("learner", ASCENDING)])


class MongoEnrolmentRepository:
    """Bound to one unit of work: reads and writes go in its transaction's session."""

    def __init__(
        self, db: AsyncDatabase[Any], uow: Transaction, sealer: SubmissionSealer | None = None
    ) -> None:
        self._enrolments = db["enrolments"]
        self._uow = uow
        self._sealer = sealer

    async def _sealed(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._sealer is not None:
            await self._sealer.seal_documents(docs)
        return docs

    async def _opened(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._sealer is not None:
            await self._sealer.open_documents(docs)
        return docs

    async def get(self, enrolment_id: str) -> Enrolment | None:
        doc = await self._enrolments.find_one({"_id": enrolment_id}, session=self._uow.session)
        return enrolment_from_document((await self._opened([doc]))[0]) if doc else None

    async def get_many(self, enrolment_ids: Sequence[str]) -> dict[str, Enrolment]:
        if not enrolment_ids:
            return {}
        cursor = self._enrolments.find(
            {"_id": {"$in": list(set(enrolment_ids))}}, session=self._uow.session
        )
        docs = await self._opened([doc async for doc in cursor])
        return {doc["_id"]: enrolment_from_document(doc) for doc in docs}

    async def fingerprints(self, enrolment_ids: Sequence[str]) -> dict[str, str]:
        if not enrolment_ids:
            return {}
        cursor = self._enrolments.find(
            {"_id": {"$in": list(set(enrolment_ids))}},
            {"fingerprint": 1},
            session=self._uow.session,
        )
        return {doc["_id"]: doc["fingerprint"] async for doc in cursor}

    async def add(self, enrolments: Sequence[Enrolment]) -> None:
        if not enrolments:
            return
        now = self._uow.now
        docs = await self._sealed([enrolment_document(e, now) for e in enrolments])
        await self._enrolments.insert_many(docs, ordered=True, session=self._uow.session)

    async def save(self, enrolment: Enrolment, expected_version: int) -> None:
        (doc,) = await self._sealed([enrolment_document(enrolment, self._uow.now)])
        result = await self._enrolments.update_one(
            {"_id": enrolment.enrolment_id, "version": expected_version},
            {"$set": _changes(doc, expected_version)},
            session=self._uow.session,
        )
        if result.matched_count != 1:
            raise VersionConflict(enrolment.enrolment_id)

    async def save_many(self, changed: Sequence[tuple[Enrolment, int]]) -> None:
        if not changed:
            return
        now = self._uow.now
        docs = await self._sealed([enrolment_document(e, now) for e, _ in changed])
        updates = [
            UpdateOne(
                {"_id": enrolment.enrolment_id, "version": expected},
                {"$set": _changes(doc, expected)},
            )
            for (enrolment, expected), doc in zip(changed, docs, strict=True)
        ]
        result = await self._enrolments.bulk_write(updates, ordered=True, session=self._uow.session)
        if result.matched_count != len(updates):
            raise VersionConflict("an enrolment changed since it was read")


def _changes(doc: dict[str, Any], expected_version: int) -> dict[str, Any]:
    """A stored enrolment's new fields (its id and acceptance never change)."""
    doc["version"] = expected_version + 1
    doc.pop("_id")
    doc.pop("accepted_at")
    return doc


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
