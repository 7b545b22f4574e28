"""Right to erasure in an immutable log (crypto-shredding), and consent changes, end to
end through the three real services.

A learner with distinctive personal values is enrolled (HTTP), reaches matching (the
befriending pool, with consent to be matched on background) and reporting (equality
monitoring), and is then erased. The test then proves:

* no service database holds the learner's data key or any of the distinctive values
  (every collection of the three services' databases, decoded and searched);
* a fresh consumer replaying every topic from the beginning finds no plaintext of the
  distinctive values in any record (raw bytes), and the learner's sealed boxes cannot be
  opened with any key held by any service;
* the one residue an immutable log keeps: the copy of the data key wrapped under the
  platform wrapping key in the learner's ``LearnerKeyIssued``. After the documented
  wrapping-key rotation (reissue live keys under a new wrapping key, retire the old
  one), a replay with every key the platform then holds opens a control learner's
  boxes but never the erased learner's.

The rotation here reissues only the control learner's key (not every live learner's),
so the shared topics other test modules read keep working with the old wrapping key.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from bson import BSON

from services.enrolment.app import key_rings_for, pseudonymiser_for
from services.enrolment.privacy import LearnerVault
from services.enrolment.repository import MongoProviderDirectory
from services.enrolment.unit_of_work import unit_of_work_factory
from services.enrolment.use_cases.intake import EnrolmentService, IntakeMetrics
from services.enrolment.use_cases.privacy import PrivacyService
from services.matching.domain import Match, MatchStatus
from services.matching.repository import match_doc
from shared.contracts.enrolment import LearnerKeyIssued
from shared.contracts.privacy import SealedBox, WrappedKey
from shared.crypto import CryptoError, KeyRing, open_personal
from shared.settings import DEV_LEARNER_KEY_WRAPPING_KEYS
from shared.telemetry import build_telemetry
from tests.helpers import poll_until, unique
from tests.security.conftest import GM, Platform, submission, token

pytestmark = pytest.mark.integration

DEV_RING = KeyRing.parse(DEV_LEARNER_KEY_WRAPPING_KEYS, "learner-key-wrapping")
NEW_SECRET = "rotated-" + "".join(random.choices(string.ascii_letters, k=40))
ROTATED_RING = KeyRing.parse(f"sec2:{NEW_SECRET}", "learner-key-wrapping")


@dataclass
class Person:
    doc: dict[str, Any]
    enrolment_id: str = ""
    learner: str = ""

    def distinctive_tokens(self) -> list[bytes]:
        """Values no other test uses, searchable as raw bytes anywhere."""
        return [
            self.doc["learner_ref"].encode(),
            self.doc["given_names"].encode(),
            self.doc["family_name"].encode(),
            *(i.encode() for i in self.doc["interests"]),
        ]

    def json_fragments(self) -> list[bytes]:
        """Short values, as they would appear in clear JSON (quotes and colons never
        occur in base64url ciphertext, so these cannot match by chance)."""
        return [
            f'"{self.doc["country_of_birth"]}"'.encode(),
            f'"{self.doc["first_language"]}"'.encode(),
            f'"year_of_arrival":{self.doc["year_of_arrival"]}'.encode(),
            f'"year_of_arrival": {self.doc["year_of_arrival"]}'.encode(),
        ]


def person(country: str, language: str) -> Person:
    return Person(
        submission(
            given_names="Erasable " + token(10, string.ascii_lowercase),
            family_name="Zz" + token(10, string.ascii_lowercase),
            ethnicity="black_caribbean",
            religion="buddhist",
            country_of_birth=country,
            first_language=language,
            date_of_birth="1950-03-15",
            year_of_arrival=random.randint(1961, 1979),
            wants_conversation_partner=True,
            consent={"matching": True, "research": True},
            availability=["sun-eve"],
            interests=["zq" + token(12, string.ascii_lowercase)],
        )
    )


async def enrol(p: Platform, who: Person) -> None:
    response = await p.enrolment.post(
        "/v1/enrolments", json=who.doc, headers=p.auth(p.keys.provider_gm)
    )
    assert response.status_code == 201, response.text
    who.enrolment_id = response.json()["enrolment_id"]
    got = await p.enrolment.get(response.json()["href"], headers=p.auth(p.keys.provider_gm))
    who.learner = got.json()["learner"]


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for v in value:
            yield from walk(v, path)
    else:
        yield path, value


async def database_findings(p: Platform, who: Person) -> list[str]:
    """Every place in the three services' databases that holds a personal value of
    ``who`` (raw BSON for long tokens, decoded values for short ones)."""
    findings = []
    short = {who.doc["country_of_birth"], who.doc["first_language"]}
    for name, db in (
        ("enrolment", p.enrolment_db),
        ("matching", p.matching_db),
        ("reporting", p.reporting_db),
    ):
        for collection in await db.list_collection_names():
            async for doc in db[collection].find({}):
                raw = bytes(BSON.encode(doc))  # plain bytes: a substring search
                for tok in who.distinctive_tokens():
                    if tok in raw:
                        findings.append(f"{name}.{collection}: {tok!r}")
                for path, value in walk(doc):
                    if isinstance(value, str) and value in short:
                        findings.append(f"{name}.{collection}{path} = {value!r}")
                    if path.endswith("year_of_arrival") and value == who.doc["year_of_arrival"]:
                        findings.append(f"{name}.{collection}{path}")
                if any(v == who.learner for _, v in walk(doc)) and collection == "learner_keys":
                    findings.append(f"{name}.{collection}: a data key of the learner")
    return findings


@dataclass
class Replay:
    records: list[Any]

    def bodies(self, learner: str, ce_type: str | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self.records:
            if r.key != learner.encode() or not r.value:
                continue
            headers = dict(r.headers or ())
            if ce_type and headers.get("ce_type") != ce_type.encode():
                continue
            try:
                out.append(json.loads(r.value))
            except ValueError:
                continue
        return out


async def replay_everything(bootstrap: str) -> Replay:
    """Every record of every topic (see ``replay_once``). A fresh client can start with
    no partitions in its metadata on a loaded machine, so an empty replay is retried
    with a new one (the log is known not to be empty here)."""

    async def non_empty() -> Replay | None:
        replay = await replay_once(bootstrap)
        return replay if replay.records else None

    return await poll_until(non_empty, timeout_s=60, interval_s=1, what="a non-empty replay")


async def replay_once(bootstrap: str) -> Replay:
    """A fresh consumer (no group) reads every record of every topic, up to the end
    offsets seen when it started."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = await consumer.topics()
        partitions = [
            TopicPartition(t, q)
            for t in sorted(topics)
            for q in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, got in batch.items():
                records.extend(r for r in got if r.offset < end[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return Replay(records)
    finally:
        await consumer.stop()


def openable(replay: Replay, learner: str, rings: list[KeyRing]) -> int:
    """How many of the learner's sealed boxes in the log open with any key that can be
    unwrapped (from any LearnerKeyIssued in the log) with any of ``rings``."""
    keys: dict[str, bytes] = {}
    for body in replay.bodies(learner, LearnerKeyIssued.ce_type()):
        wrapped = WrappedKey.model_validate(body["wrapped"])
        for ring in rings:
            try:
                keys[body["key_id"]] = ring.unwrap(learner, body["key_id"], wrapped)
            except CryptoError:
                continue
    opened = 0
    for body in replay.bodies(learner):
        if not body.get("sealed"):
            continue
        box = SealedBox.model_validate(body["sealed"])
        if box.key_id in keys:
            open_personal(keys[box.key_id], learner, box)
            opened += 1
    return opened


async def test_erasure_leaves_nothing_recoverable(platform: Platform) -> None:
    p = platform
    erased, control = person("TV", "tvl"), person("NR", "nau")
    await enrol(p, erased)
    await enrol(p, control)

    # Both reached every service with their personal data.
    async def in_matching() -> bool:
        docs = (
            await p.matching_db["participants"]
            .find({"_id": {"$in": [erased.learner, control.learner]}})
            .to_list()
        )
        return len(docs) == 2 and all(d["background"] and d["interests"] for d in docs)

    await poll_until(in_matching, what="both participants in the matching pool")

    async def in_reporting() -> bool:
        docs = (
            await p.reporting_db["g1_enrolments"]
            .find({"learner": {"$in": [erased.learner, control.learner]}})
            .to_list()
        )
        return len(docs) == 2 and all(d["ethnicity"] == "black_caribbean" for d in docs)

    await poll_until(in_reporting, what="both enrolments in reporting with their ethnicity")
    assert await database_findings(p, erased), "the search finds the values before erasure"

    response = await p.enrolment.delete(
        f"/v1/learners/{erased.learner}", headers=p.auth(p.keys.provider_gm)
    )
    assert response.status_code == 202, response.text
    assert response.json()["enrolment_ids"] == [erased.enrolment_id]

    async def forgotten_everywhere() -> bool:
        for db in (p.matching_db, p.reporting_db):
            if not await db["erased_learners"].find_one({"_id": erased.learner}):
                return False
        participant = await p.matching_db["participants"].find_one({"_id": erased.learner})
        state = await p.reporting_db["g1_enrolments"].find_one({"learner": erased.learner})
        return bool(participant and participant.get("erased") and state and not state["ethnicity"])

    await poll_until(forgotten_everywhere, what="every service to process LearnerErased")

    assert await database_findings(p, erased) == []
    for db in (p.enrolment_db, p.matching_db, p.reporting_db):
        assert await db["learner_keys"].find_one({"_id": erased.learner}) is None
    assert await database_findings(p, control), "the control learner is untouched"
    # Still counted: the erased learner's enrolment stays in reporting's aggregates.
    state = await p.reporting_db["g1_enrolments"].find_one({"learner": erased.learner})
    assert state is not None and state["accepted"] is True

    replay = await replay_everything(p.infra.kafka_bootstrap_servers)
    assert len(replay.records) > 0
    for record in replay.records:
        raw = b"".join([record.key or b"", record.value or b"", *(v for _, v in record.headers)])
        for needle in erased.distinctive_tokens() + erased.json_fragments():
            assert needle not in raw, f"{needle!r} in {record.topic}@{record.offset}"
    sealed = [b for b in replay.bodies(erased.learner) if b.get("sealed")]
    assert len(sealed) >= 2  # EnrolmentAccepted and ParticipantOptedIn, ciphertext only
    assert all(
        b.get("background") in (None, {}) or not any(b["background"].values()) for b in sealed
    )

    # The residue of an immutable log, and how rotation retires it.
    assert openable(replay, erased.learner, [DEV_RING]) >= 1, "wrapped key still in the log"
    await reissue_under_new_ring(p, [erased.learner, control.learner])

    async def reissued() -> Replay | None:
        again = await replay_everything(p.infra.kafka_bootstrap_servers)
        return again if openable(again, control.learner, [ROTATED_RING]) else None

    after = await poll_until(reissued, timeout_s=30, what="the control key under the new ring")
    # With the old wrapping key retired, every key the platform holds: nothing of the
    # erased learner opens; the control learner's data still does.
    assert openable(after, erased.learner, [ROTATED_RING]) == 0
    assert openable(after, control.learner, [ROTATED_RING]) >= 2


async def reissue_under_new_ring(p: Platform, learners: list[str]) -> None:
    """Step 2 of a wrapping-key rotation (``enrolment-admin reissue-keys``) with the new
    key first in the ring; the running enrolment service's relay publishes."""
    settings = p.enrolment_settings.model_copy(
        update={
            "learner_key_wrapping_keys": _secret(
                f"sec2:{NEW_SECRET},{DEV_LEARNER_KEY_WRAPPING_KEYS}"
            )
        }
    )
    from pymongo import AsyncMongoClient

    from shared.outbox import MongoOutbox

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(p.infra.mongodb_url, tz_aware=True)
    try:
        db = client[settings.database_name]
        master, platform_ring = key_rings_for(settings)
        outbox = MongoOutbox(db, retention_s=settings.outbox_retention_s)
        vault = LearnerVault(db, master=master, platform=platform_ring)
        unit_of_work = unit_of_work_factory(client, db, outbox)
        service = EnrolmentService(
            unit_of_work,
            MongoProviderDirectory(db),
            pseudonymiser_for(settings),
            IntakeMetrics(build_telemetry(settings)),
            vault=vault,
        )
        count = await PrivacyService(service, unit_of_work, vault).reissue_keys(learners)
        assert count == 1  # the erased learner has no key left to reissue
    finally:
        await client.close()


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


async def test_withdrawn_matching_consent_leaves_the_pool_and_withdraws_proposals(
    platform: Platform,
) -> None:
    p = platform
    who = person("GS", "gsw")
    await enrol(p, who)

    async def waiting() -> bool:
        doc = await p.matching_db["participants"].find_one({"_id": who.learner})
        return bool(doc and doc["background"])

    await poll_until(waiting, what="the participant in the pool with a background")
    # A pending proposal for them (seeded: the optimiser is idle in this suite).
    now = datetime.now(UTC).replace(microsecond=0)
    volunteer_id = unique("vol")
    match_id = unique("match")
    await p.matching_db["volunteers"].insert_one(
        {
            "_id": volunteer_id,
            "combined_authority": GM.value,
            "local_authority": "E08000004",
            "capacity": 1,
            "active": 1,
            "dbs_expires_on": "2030-01-01",
            "registered_at": now,
            "updated_at": now,
        }
    )
    await p.matching_db["participants"].update_one(
        {"_id": who.learner}, {"$set": {"status": "proposed"}}
    )
    await p.matching_db["matches"].insert_one(
        match_doc(
            Match(
                match_id=match_id,
                volunteer_id=volunteer_id,
                participant=who.learner,
                enrolment_id=who.enrolment_id,
                combined_authority=GM,
                local_authority="E08000004",
                status=MatchStatus.PROPOSED,
                score=1.0,
                score_components={},
                bridging_dimensions=("country_of_birth",),
                shared_slots=("sun-eve",),
                shared_interests=(),
                explanation="seeded",
                waited_since=now - timedelta(days=2),
                proposed_at=now,
            )
        )
    )

    withdraw = await p.enrolment.post(
        f"/v1/enrolments/{who.enrolment_id}/consent",
        json={"matching": False, "research": True},
        headers=p.auth(p.keys.provider_gm),
    )
    assert withdraw.status_code == 202, withdraw.text

    async def withdrawn() -> bool:
        match = await p.matching_db["matches"].find_one({"_id": match_id})
        return bool(match and match["status"] == "declined")

    await poll_until(withdrawn, what="the pending proposal to be withdrawn")
    match = await p.matching_db["matches"].find_one({"_id": match_id})
    assert match is not None and match["decline_reason"] == "consent_withdrawn"
    participant = await p.matching_db["participants"].find_one({"_id": who.learner})
    assert participant is not None
    assert participant["status"] == "ended" and participant["background"] is None
    assert participant["consent_matching"] is False
    volunteer = await p.matching_db["volunteers"].find_one({"_id": volunteer_id})
    assert volunteer is not None and volunteer["active"] == 0
    pool = await p.matching.get("/v1/pool", headers=p.auth(p.keys.coordinator_gm))
    assert who.learner not in {w["participant"] for v in pool.json() for w in v["waiting"]}

    # Later events of the enrolment carry the new consent.
    got = await p.enrolment.get(
        f"/v1/enrolments/{who.enrolment_id}", headers=p.auth(p.keys.provider_gm)
    )
    assert got.json()["submission"]["consent"] == {"matching": False, "research": True}
