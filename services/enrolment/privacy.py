"""Crypto-shredding on the producing side: learner data keys, sealed events, erasure.

* Every learner gets one random 256-bit data key (DEK) the first time an event of theirs
  carries personal fields. It is stored only in this service's database
  (``learner_keys``), wrapped under the master key ring (``ENROLMENT_DATA_KEY_ENCRYPTION_KEYS``).
* Events leave with their personal fields (background, languages, interests) sealed
  under the DEK and their clear counterparts empty, preceded on the same Kafka key (so
  the same partition, so in order) by ``LearnerKeyIssued``: the DEK wrapped under the
  platform key ring that consumers hold.
* At rest, an enrolment document's personal submission fields are sealed under the same
  DEK (:class:`SubmissionSealer`), so MongoDB's own copies (oplog, backups) hold them
  only as ciphertext; :meth:`LearnerVault.rewrap_all` (``enrolment-admin
  rotate-master-key``) re-wraps live DEKs under the current master key so an old one can
  be destroyed, leaving every older copy of an erased learner's DEK unopenable.
* Erasure (``PrivacyService.erase``, through :class:`LearnerErasures`) deletes the
  learner's enrolment documents (the submission: names, date of birth, postcode,
  background), the DEK, and every ``LearnerKeyIssued`` still in the outbox, records the
  pseudonym in ``erased_learners`` and queues ``LearnerErased``, in one transaction.

See docs/privacy.md for the whole design and what it guarantees.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.enrolment.repository import Transaction
from shared.cloudevents import Event
from shared.contracts.enrolment import (
    ConsentChanged,
    EnrolmentAccepted,
    LearnerKeyIssued,
    ParticipantOptedIn,
    SealedPersonalData,
)
from shared.contracts.privacy import SealedBox, WrappedKey
from shared.crypto import (
    CryptoError,
    KeyRing,
    new_data_key,
    new_key_id,
    open_box,
    seal,
    seal_personal,
)
from shared.mongo import in_chunks

logger = logging.getLogger(__name__)

Doc = dict[str, Any]


@dataclass
class RewrapReport:
    rewrapped: int = 0
    unreadable: int = 0
    remaining: int = 0
    """Keys still wrapped under an older master key (0: the old keys may be removed)."""


@dataclass(frozen=True)
class DataKey:
    learner: str
    key_id: str
    key: bytes


def seal_event(event: Event, dek: DataKey) -> Event:
    """The event with its personal fields moved into a sealed box (others unchanged)."""
    if isinstance(event, EnrolmentAccepted):
        data = SealedPersonalData(background=event.background)
        box = seal_personal(dek.key, dek.key_id, dek.learner, data)
        return event.model_copy(update={"background": type(event.background)(), "sealed": box})
    if isinstance(event, ParticipantOptedIn):
        data = SealedPersonalData(
            background=event.background, languages=event.languages, interests=event.interests
        )
        box = seal_personal(dek.key, dek.key_id, dek.learner, data)
        return event.model_copy(
            update={"background": None, "languages": (), "interests": (), "sealed": box}
        )
    return event


def consent_changed_box(event: ConsentChanged, background: Any, dek: DataKey) -> ConsentChanged:
    data = SealedPersonalData(background=background)
    return event.model_copy(
        update={"sealed": seal_personal(dek.key, dek.key_id, dek.learner, data)}
    )


def needs_sealing(event: Event) -> bool:
    return isinstance(event, EnrolmentAccepted | ParticipantOptedIn)


class LearnerVault:
    """This service's learner data keys and erasures (its own database)."""

    def __init__(self, db: AsyncDatabase[Any], *, master: KeyRing, platform: KeyRing) -> None:
        self._keys = db["learner_keys"]
        self._erased = db["erased_learners"]
        self._enrolments = db["enrolments"]
        self._master = master
        self._platform = platform

    async def ensure_indexes(self) -> None:
        await self._erased.create_index("provider_ids")

    def _unwrap(self, doc: Doc) -> DataKey:
        wrapped = WrappedKey.model_validate(doc["wrapped"])
        return DataKey(
            doc["_id"], doc["key_id"], self._master.unwrap(doc["_id"], doc["key_id"], wrapped)
        )

    async def keys_for(self, learners: Iterable[str], *, create: bool = True) -> dict[str, DataKey]:
        """Each learner's data key, created on first use (concurrent creators agree on
        one: the first insert wins and everyone reads it back). ``create=False``: only
        existing keys (an erased learner has none)."""
        wanted = sorted(set(learners))
        if not wanted:
            return {}
        found: dict[str, Doc] = {}
        for ids in in_chunks(wanted):
            found.update({d["_id"]: d async for d in self._keys.find({"_id": {"$in": ids}})})
        missing = [learner for learner in wanted if learner not in found]
        if missing and create:
            # One bulk write for the batch (was one upsert per learner: the largest cost
            # of intake, bench/RESULTS.md). A key another creator inserted first is read
            # back; the ones this call inserted are used as written.
            now = datetime.now(UTC)
            created: dict[str, Doc] = {}
            for learner in missing:
                key_id = new_key_id()
                wrapped = self._master.wrap(learner, key_id, new_data_key())
                created[learner] = {
                    "_id": learner,
                    "key_id": key_id,
                    "wrapped": wrapped.model_dump(mode="json"),
                    "created_at": now,
                }
            # Inserts, not upserts: the embedded server's insert path costs about a
            # quarter of its update path, and a key another creator inserted first is a
            # duplicate-key error for that document alone (unordered).
            try:
                await self._keys.insert_many(list(created.values()), ordered=False)
                inserted = set(created)
            except BulkWriteError as exc:  # concurrent creators: the first insert won
                errors = exc.details.get("writeErrors", ())
                if any(e.get("code") != 11000 for e in errors):
                    raise
                lost = {missing[e["index"]] for e in errors}
                inserted = set(created) - lost
            found.update({learner: created[learner] for learner in inserted})
            others = [learner for learner in missing if learner not in inserted]
            for ids in in_chunks(others):
                found.update({d["_id"]: d async for d in self._keys.find({"_id": {"$in": ids}})})
        return {learner: self._unwrap(doc) for learner, doc in found.items()}

    async def rewrap_all(self) -> RewrapReport:
        """Re-wrap every live learner's data key under the current (first) master key.

        Step 2 of a master-key rotation (docs/privacy.md): afterwards no live key needs
        an older master key, so it can be removed from ``ENROLMENT_DATA_KEY_ENCRYPTION_KEYS``
        and destroyed, and every copy of a key wrapped under it (an erased learner's in
        the oplog or a backup) opens with nothing. Each key is replaced only if it is
        still the one read (compare-and-set on its wrapping): a key erased meanwhile is
        not brought back, and running it twice changes nothing. Keys the ring cannot
        open are counted, never dropped."""
        current = self._master.current
        report = RewrapReport()
        async for doc in self._keys.find({"wrapped.wrapping_key_id": {"$ne": current}}):
            wrapped = WrappedKey.model_validate(doc["wrapped"])
            try:
                key = self._master.unwrap(doc["_id"], doc["key_id"], wrapped)
            except CryptoError:
                report.unreadable += 1
                continue
            rewrapped = self._master.wrap(doc["_id"], doc["key_id"], key)
            result = await self._keys.update_one(
                {"_id": doc["_id"], "wrapped.nonce": doc["wrapped"]["nonce"]},
                {"$set": {"wrapped": rewrapped.model_dump(mode="json")}},
            )
            report.rewrapped += result.modified_count
        report.remaining = await self._keys.count_documents(
            {"wrapped.wrapping_key_id": {"$ne": current}}
        )
        logger.info(
            "master key rotation: %d learner key(s) re-wrapped under %s, %d unreadable, "
            "%d still under an older master key",
            report.rewrapped,
            current,
            report.unreadable,
            report.remaining,
        )
        return report

    def key_event(self, dek: DataKey, now: datetime) -> LearnerKeyIssued:
        return LearnerKeyIssued(
            learner=dek.learner,
            key_id=dek.key_id,
            wrapped=self._platform.wrap(dek.learner, dek.key_id, dek.key),
            issued_at=now,
        )

    async def all_learners(self) -> list[str]:
        return [d["_id"] async for d in self._keys.find({}, {"_id": 1}).sort("_id", 1)]

    async def erased(self, learner: str) -> Doc | None:
        doc: Doc | None = await self._erased.find_one({"_id": learner})
        return doc

    async def enrolment_ids_of(self, learner: str) -> list[tuple[str, str]]:
        """(enrolment id, provider id) of every enrolment of the learner."""
        cursor = self._enrolments.find({"learner": learner}, {"provider_id": 1})
        return [(d["_id"], d["provider_id"]) async for d in cursor]


class LearnerErasures(Protocol):
    """Erasures read and written in a unit of work's transaction."""

    async def get(self, learner: str) -> Doc | None: ...

    async def erase(self, learner: str, enrolments: Sequence[tuple[str, str]], by: str) -> None:
        """Delete the learner's enrolment documents and data key; record the erasure
        (its time, who asked, the (enrolment, provider) ids)."""
        ...


class MongoLearnerErasures:
    """Bound to one unit of work: reads and writes go in its transaction's session."""

    def __init__(self, db: AsyncDatabase[Any], uow: Transaction) -> None:
        self._keys = db["learner_keys"]
        self._erased = db["erased_learners"]
        self._enrolments = db["enrolments"]
        self._uow = uow

    async def get(self, learner: str) -> Doc | None:
        doc: Doc | None = await self._erased.find_one({"_id": learner}, session=self._uow.session)
        return doc

    async def erase(self, learner: str, enrolments: Sequence[tuple[str, str]], by: str) -> None:
        await self._enrolments.delete_many({"learner": learner}, session=self._uow.session)
        await self._keys.delete_one({"_id": learner}, session=self._uow.session)
        await self._erased.insert_one(
            {
                "_id": learner,
                "erased_at": self._uow.now,
                "erased_by": by,
                "enrolment_ids": [e for e, _ in enrolments],
                "provider_ids": sorted({p for _, p in enrolments}),
            },
            session=self._uow.session,
        )


# Fields of a stored submission that identify the learner or are special category data.
# At rest they live only in ``submission_sealed`` (under the learner's data key), so a
# copy of the document outside the collection (MongoDB's oplog, a backup) holds them
# only as ciphertext, which erasure plus a master-key rotation leave without a key.
# ``learner_ref`` (the provider's own reference, needed in clear by ILR intake) and the
# programme fields stay in clear.
PERSONAL_SUBMISSION_FIELDS = (
    "given_names",
    "family_name",
    "postcode",
    "date_of_birth",
    "ethnicity",
    "religion",
    "country_of_birth",
    "first_language",
    "year_of_arrival",
    "interests",
)


class SubmissionSealer:
    """Seals the personal fields of enrolment documents before they are written and
    opens them after they are read (``MongoEnrolmentRepository(sealer=...)``)."""

    def __init__(self, vault: LearnerVault) -> None:
        self._vault = vault

    async def seal_documents(self, docs: Sequence[Doc]) -> None:
        """In place: each document's personal submission fields move into one box."""
        if not docs:
            return
        keys = await self._vault.keys_for({d["learner"] for d in docs})
        for doc in docs:
            dek = keys[doc["learner"]]
            submission = doc["submission"]
            personal = {f: submission.pop(f) for f in PERSONAL_SUBMISSION_FIELDS if f in submission}
            box = seal(dek.key, dek.key_id, dek.learner, json.dumps(personal).encode())
            doc["submission_sealed"] = box.model_dump(mode="json")

    async def open_documents(self, docs: Sequence[Doc]) -> None:
        """In place: the sealed fields back into each document's submission. Documents
        written before sealing at rest (no ``submission_sealed``) are left as they are."""
        sealed = [d for d in docs if d.get("submission_sealed")]
        if not sealed:
            return
        keys = await self._vault.keys_for({d["learner"] for d in sealed}, create=False)
        for doc in sealed:
            dek = keys.get(doc["learner"])
            if dek is None:
                raise CryptoError(f"enrolment {doc['_id']}: its learner has no data key (erased)")
            box = SealedBox.model_validate(doc.pop("submission_sealed"))
            doc["submission"].update(json.loads(open_box(dek.key, dek.learner, box)))
