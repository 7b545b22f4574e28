"""In-memory fake of ILR intake's upload store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tests.unit.enrolment.enrolment_fakes import FakeEnrolments


class FakeUploads:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, tuple[str, datetime]] = {}
        self.roster: dict[tuple[str, str, str], str] = {}
        self.enrolments: FakeEnrolments | None = None

    async def ensure_indexes(self) -> None:
        return None

    async def create(self, doc: dict[str, Any]) -> None:
        self.docs[doc["_id"]] = dict(doc)

    async def update(self, upload_id: str, fields: dict[str, Any]) -> None:
        self.docs[upload_id].update(fields)

    async def get(self, upload_id: str) -> dict[str, Any] | None:
        doc = self.docs.get(upload_id)
        return dict(doc) if doc else None

    async def lock(self, key: str, upload_id: str, now: datetime, stale_before: datetime) -> bool:
        held = self.locks.get(key)
        if held is not None and held[1] >= stale_before:
            return False
        self.locks[key] = (upload_id, now)
        return True

    async def heartbeat(self, key: str, upload_id: str, now: datetime) -> None:
        if self.locks.get(key, ("",))[0] == upload_id:
            self.locks[key] = (upload_id, now)

    async def unlock(self, key: str, upload_id: str) -> None:
        if self.locks.get(key, ("",))[0] == upload_id:
            del self.locks[key]

    async def record_learners(
        self, ukprn: str, year: str, upload_id: str, learners: Sequence[str], now: datetime
    ) -> None:
        for learner in learners:
            self.roster[(ukprn, year, learner)] = upload_id

    async def missing_learners(self, ukprn: str, year: str, upload_id: str) -> list[str]:
        return sorted(
            learner
            for (u, y, learner), last in self.roster.items()
            if u == ukprn and y == year and last != upload_id
        )

    async def learner_refs(self, provider_id: str, learners: Sequence[str]) -> dict[str, str]:
        assert self.enrolments is not None
        return {
            e.learner: e.submission.learner_ref
            for e in self.enrolments.docs.values()
            if e.provider_id == provider_id and e.learner in learners
        }
