"""MongoDB adapter of ILR file intake (in the enrolment service's own database).

Collections: ``ilr_uploads`` (one document per accepted upload: status, progress
counters, the submission report; expires after ``ilr_upload_retention_s``),
``ilr_locks`` (one upload at a time per provider and collection year) and
``ilr_roster`` (which learners, by pseudonym, the last upload of a provider and year
held, so that a learner missing from a later file is reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

Doc = dict[str, Any]


class UploadStore(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def create(self, doc: Doc) -> None: ...

    async def update(self, upload_id: str, fields: Doc) -> None: ...

    async def get(self, upload_id: str) -> Doc | None: ...

    async def lock(self, key: str, upload_id: str, now: datetime, stale_before: datetime) -> bool:
        """Take the provider-and-year lock (or a stale one); False when held."""
        ...

    async def heartbeat(self, key: str, upload_id: str, now: datetime) -> None: ...

    async def unlock(self, key: str, upload_id: str) -> None: ...

    async def record_learners(
        self, ukprn: str, year: str, upload_id: str, learners: Sequence[str], now: datetime
    ) -> None: ...

    async def missing_learners(self, ukprn: str, year: str, upload_id: str) -> list[str]:
        """Learners of earlier uploads of this provider and year not in this one."""
        ...

    async def learner_refs(self, provider_id: str, learners: Sequence[str]) -> dict[str, str]:
        """Learner pseudonym → the provider's LearnRefNumber, from its enrolments."""
        ...


class MongoUploadStore:
    def __init__(self, db: AsyncDatabase[Doc], retention_s: int) -> None:
        self._uploads = db["ilr_uploads"]
        self._locks = db["ilr_locks"]
        self._roster = db["ilr_roster"]
        self._enrolments = db["enrolments"]
        self._retention_s = retention_s

    async def ensure_indexes(self) -> None:
        await self._uploads.create_index("created_at", expireAfterSeconds=self._retention_s)
        await self._uploads.create_index([("provider_id", ASCENDING)])
        await self._roster.create_index(
            [("ukprn", ASCENDING), ("year", ASCENDING), ("last_upload", ASCENDING)]
        )

    async def create(self, doc: Doc) -> None:
        await self._uploads.insert_one(doc)

    async def update(self, upload_id: str, fields: Doc) -> None:
        await self._uploads.update_one({"_id": upload_id}, {"$set": fields})

    async def get(self, upload_id: str) -> Doc | None:
        doc: Doc | None = await self._uploads.find_one({"_id": upload_id})
        return doc

    async def lock(self, key: str, upload_id: str, now: datetime, stale_before: datetime) -> bool:
        try:
            await self._locks.insert_one({"_id": key, "upload_id": upload_id, "beat": now})
            return True
        except DuplicateKeyError:
            result = await self._locks.update_one(
                {"_id": key, "beat": {"$lt": stale_before}},
                {"$set": {"upload_id": upload_id, "beat": now}},
            )
            return result.modified_count == 1

    async def heartbeat(self, key: str, upload_id: str, now: datetime) -> None:
        await self._locks.update_one({"_id": key, "upload_id": upload_id}, {"$set": {"beat": now}})

    async def unlock(self, key: str, upload_id: str) -> None:
        await self._locks.delete_one({"_id": key, "upload_id": upload_id})

    async def record_learners(
        self, ukprn: str, year: str, upload_id: str, learners: Sequence[str], now: datetime
    ) -> None:
        if not learners:
            return
        ops = [
            UpdateOne(
                {"_id": f"{ukprn}|{year}|{learner}"},
                {
                    "$set": {"last_upload": upload_id, "seen_at": now},
                    "$setOnInsert": {"ukprn": ukprn, "year": year, "learner": learner},
                },
                upsert=True,
            )
            for learner in sorted(set(learners))
        ]
        await self._roster.bulk_write(ops, ordered=False)

    async def missing_learners(self, ukprn: str, year: str, upload_id: str) -> list[str]:
        cursor = self._roster.find(
            {"ukprn": ukprn, "year": year, "last_upload": {"$ne": upload_id}}, {"learner": 1}
        )
        return sorted([doc["learner"] async for doc in cursor])

    async def learner_refs(self, provider_id: str, learners: Sequence[str]) -> dict[str, str]:
        if not learners:
            return {}
        cursor = self._enrolments.find(
            {"provider_id": provider_id, "learner": {"$in": list(learners)}},
            {"learner": 1, "submission.learner_ref": 1},
        )
        return {doc["learner"]: doc["submission"]["learner_ref"] async for doc in cursor}
