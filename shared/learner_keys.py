"""A consuming service's copy of learner data keys (crypto-shredding, consumer side).

Each consumer of ``enrolment.events.v1`` that needs personal fields keeps, in its OWN
database, the wrapped data keys it received (``LearnerKeyIssued``) and the pseudonyms of
erased learners (``LearnerErased``). :class:`KeyBatch` applies a batch's key events in
log order and opens the sealed events of the batch, so the same code serves a
per-record subscriber and a batch projector.

Erasure is final: a ``LearnerKeyIssued`` for an erased learner (a replay of the log,
a rebuild) is ignored, so a key can never be brought back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo import DeleteOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from shared.cloudevents import Event
from shared.contracts.enrolment import (
    ConsentChanged,
    EnrolmentAccepted,
    LearnerErased,
    LearnerKeyIssued,
    ParticipantOptedIn,
    SealedPersonalData,
)
from shared.contracts.privacy import WrappedKey
from shared.crypto import CryptoError, KeyRing, open_personal

logger = logging.getLogger(__name__)

Doc = dict[str, Any]
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    wrapped: WrappedKey


class MongoLearnerKeys:
    """Collections ``learner_keys`` (``_id`` = pseudonym) and ``erased_learners``."""

    def __init__(self, db: AsyncDatabase[Doc], *, prefix: str = "") -> None:
        self._keys: AsyncCollection[Doc] = db[f"{prefix}learner_keys"]
        self._erased: AsyncCollection[Doc] = db[f"{prefix}erased_learners"]

    async def ensure_indexes(self) -> None:
        return None  # both are looked up by _id only

    async def load(self, learners: Iterable[str]) -> tuple[dict[str, StoredKey], set[str]]:
        wanted = sorted(set(learners))
        if not wanted:
            return {}, set()
        keys = {
            d["_id"]: StoredKey(d["key_id"], WrappedKey.model_validate(d["wrapped"]))
            async for d in self._keys.find({"_id": {"$in": wanted}})
        }
        erased = {d["_id"] async for d in self._erased.find({"_id": {"$in": wanted}}, {"_id": 1})}
        return keys, erased

    async def save(self, puts: dict[str, StoredKey], erased: Sequence[str]) -> None:
        """Idempotent: keys upserted (never for an erased learner), erasures recorded and
        their keys deleted."""
        now = datetime.now(UTC)
        if erased:
            await self._erased.bulk_write(
                [
                    UpdateOne({"_id": e}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
                    for e in sorted(set(erased))
                ],
                ordered=False,
            )
            await self._keys.bulk_write([DeleteOne({"_id": e}) for e in sorted(set(erased))])
        puts = {k: v for k, v in puts.items() if k not in set(erased)}
        if puts:
            # Re-check: never resurrect a key erased by an earlier batch.
            _, already = await self.load(puts)
            ops = [
                UpdateOne(
                    {"_id": learner},
                    {
                        "$set": {
                            "key_id": key.key_id,
                            "wrapped": key.wrapped.model_dump(mode="json"),
                            "stored_at": now,
                        }
                    },
                    upsert=True,
                )
                for learner, key in sorted(puts.items())
                if learner not in already
            ]
            if ops:
                await self._keys.bulk_write(ops, ordered=False)


def learner_of(event: Event) -> str | None:
    learner = getattr(event, "learner", None)
    return learner if isinstance(learner, str) else None


@dataclass
class KeyBatch:
    """The key events of a batch applied in log order, and the sealed events opened."""

    ring: KeyRing
    keys: dict[str, StoredKey]
    erased: set[str]
    new_keys: dict[str, StoredKey] = field(default_factory=dict)
    new_erasures: list[str] = field(default_factory=list)

    @classmethod
    async def load(
        cls, store: MongoLearnerKeys, ring: KeyRing, events: Iterable[Event]
    ) -> KeyBatch:
        learners = {learner for e in events if (learner := learner_of(e))}
        keys, erased = await store.load(learners)
        return cls(ring, keys, erased)

    async def save(self, store: MongoLearnerKeys) -> None:
        await store.save(self.new_keys, self.new_erasures)

    def note(self, event: Event) -> None:
        """Apply a key event (others are ignored). Call in log order."""
        if isinstance(event, LearnerKeyIssued):
            if event.learner in self.erased:
                return
            key = StoredKey(event.key_id, event.wrapped)
            self.keys[event.learner] = key
            self.new_keys[event.learner] = key
        elif isinstance(event, LearnerErased):
            self.erased.add(event.learner)
            self.keys.pop(event.learner, None)
            self.new_keys.pop(event.learner, None)
            self.new_erasures.append(event.learner)

    def is_erased(self, learner: str) -> bool:
        return learner in self.erased

    def personal(self, event: Event) -> SealedPersonalData | None:
        """The opened box of a sealed event, or None (no box, erased, key unknown)."""
        box = getattr(event, "sealed", None)
        learner = learner_of(event)
        if box is None or learner is None or learner in self.erased:
            return None
        stored = self.keys.get(learner)
        if stored is None or stored.key_id != box.key_id:
            logger.warning("no data key for a sealed %s; personal fields left out", event.ce_type())
            return None
        try:
            data_key = self.ring.unwrap(learner, stored.key_id, stored.wrapped)
            return open_personal(data_key, learner, box)
        except CryptoError as exc:
            logger.warning("sealed %s not opened: %s", event.ce_type(), exc)
            return None

    def reveal(self, event: E) -> E:
        """``event`` with its clear personal fields filled from its box. An erased
        learner's event comes back with every personal field emptied, box included."""
        learner = learner_of(event)
        if learner is not None and learner in self.erased:
            return _anonymous(event)
        data = self.personal(event)
        if data is None:
            return event
        update: dict[str, Any] = {}
        if isinstance(event, EnrolmentAccepted):
            if data.background is not None:
                update["background"] = data.background
        elif isinstance(event, ParticipantOptedIn):
            update.update(
                background=data.background if event.consent.matching else None,
                languages=data.languages,
                interests=data.interests,
            )
        elif isinstance(event, ConsentChanged):
            return event
        return event.model_copy(update=update) if update else event


def _anonymous(event: E) -> E:
    update: dict[str, Any] = {}
    if isinstance(event, EnrolmentAccepted):
        update = {"background": type(event.background)(), "sealed": None}
    elif isinstance(event, ParticipantOptedIn):
        update = {"background": None, "languages": (), "interests": (), "sealed": None}
    elif isinstance(event, ConsentChanged):
        update = {"sealed": None}
    return event.model_copy(update=update) if update else event
