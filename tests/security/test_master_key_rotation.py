"""Issue 17 item 2: erasure leaves nothing the current key rings open, oplog included.

Erasure deletes the learner's data key, but a copy of the key document (wrapped under
the master ring ``ENROLMENT_DATA_KEY_ENCRYPTION_KEYS``) stays in MongoDB's oplog and in
backups until they roll over. ``enrolment-admin rotate-master-key`` re-wraps every live
learner's key under the first master key, so the old one can be removed and destroyed;
from then on every copy of a key wrapped under it opens with nothing.

The test runs the real admin command against its own enrolment database on the real
embedded database (so the shared security platform's keys are untouched): it takes a
copy of the erased learner's key document *before* erasure (what the oplog keeps),
erases, rotates, and shows that with the rings in force afterwards (new master key
only, platform ring unchanged) neither that copy nor anything left in the database
opens the learner's sealed data, while a live learner's key and data still open.
"""

from __future__ import annotations

import argparse
import random
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import BSON
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from services.enrolment.admin import run
from services.enrolment.app import key_rings_for
from services.enrolment.privacy import PERSONAL_SUBMISSION_FIELDS, LearnerVault
from services.enrolment.settings import DEV_DATA_KEY_ENCRYPTION_KEYS, EnrolmentSettings
from services.enrolment.unit_of_work import EnrolmentUnitOfWork
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import (
    Background,
    LearnerErased,
    LearnerKeyIssued,
    SealedPersonalData,
)
from shared.contracts.privacy import WrappedKey
from shared.contracts.reference import Ethnicity
from shared.crypto import CryptoError, KeyRing, open_personal, seal_personal
from shared.outbox import MongoOutbox, OutboxMessage
from tests.helpers import unique
from tests.infra import Infra
from tests.security.conftest import Platform, submission, token

pytestmark = pytest.mark.integration

NEW_MASTER = "m2:" + "".join(random.choices(string.ascii_letters, k=48))


def settings_for(infra: Infra, database: str, ring: str) -> EnrolmentSettings:
    return EnrolmentSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=infra.mongodb_url,
        mongodb_database=database,
        data_key_encryption_keys=SecretStr(ring),
        log_json=False,
    )


def vault_for(client: AsyncMongoClient[Any], settings: EnrolmentSettings) -> LearnerVault:
    db = client[settings.database_name]
    master, platform = key_rings_for(settings)
    return LearnerVault(db, master=master, platform=platform)


def master_ring(settings: EnrolmentSettings) -> KeyRing:
    return key_rings_for(settings)[0]


async def test_rotation_retires_every_copy_of_an_erased_learners_key(infra: Infra) -> None:
    database = unique("cg_enrolment_rot")
    before = settings_for(infra, database, DEV_DATA_KEY_ENCRYPTION_KEYS)
    during = settings_for(infra, database, f"{NEW_MASTER},{DEV_DATA_KEY_ENCRYPTION_KEYS}")
    after = settings_for(infra, database, NEW_MASTER)
    client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    try:
        db = client[database]
        erased, live = "lp_" + "e" * 32, "lp_" + "c" * 32
        keys = await vault_for(client, before).keys_for([erased, live])
        secret = SealedPersonalData(background=Background(ethnicity=Ethnicity.BLACK_CARIBBEAN))
        boxes = {who: seal_personal(k.key, k.key_id, who, secret) for who, k in keys.items()}

        # What the oplog (or a backup) keeps: the key document as it was inserted.
        oplog_copy = await db["learner_keys"].find_one({"_id": erased})
        assert oplog_copy is not None

        erasure: Event = LearnerErased(learner=erased, erased_at=datetime.now(UTC))
        event = CloudEvent(data=erasure, source="/tests/security")
        message = OutboxMessage.of(event, topic="enrolment.events.v1", key=erased)
        outbox = MongoOutbox(db, retention_s=before.outbox_retention_s)

        async def erase(uow: EnrolmentUnitOfWork) -> None:
            await uow.withdraw(erased, LearnerKeyIssued.ce_type())
            await uow.erasures.erase(erased, [], "test")
            uow.publish([message])

        await EnrolmentUnitOfWork(client, db, outbox).run(erase)

        # Step 2 of the rotation, by the admin command, with the new key first.
        output = await run(argparse.Namespace(command="rotate-master-key"), during)
        assert "re-wrapped 1 learner key(s)" in output and "0 still under" in output, output
        again = await run(argparse.Namespace(command="rotate-master-key"), during)
        assert "re-wrapped 0 learner key(s)" in again, again

        # Step 3: the old master key is removed. The rings in force: new master only.
        ring = master_ring(after)
        wrapped = WrappedKey.model_validate(oplog_copy["wrapped"])
        with pytest.raises(CryptoError):
            ring.unwrap(erased, oplog_copy["key_id"], wrapped)
        # (Before the old key is destroyed, the copy still opens: why step 3 matters.)
        old = master_ring(during).unwrap(erased, oplog_copy["key_id"], wrapped)
        assert open_personal(old, erased, boxes[erased]) == secret

        # Nothing left in the database opens the erased learner's data either.
        for collection in await db.list_collection_names():
            async for doc in db[collection].find({}):
                assert erased not in (doc.get("_id"), doc.get("learner")) or (
                    collection in ("erased_learners", "outbox")
                ), f"{collection}: {doc.get('_id')}"
        assert await vault_for(client, after).keys_for([erased], create=False) == {}

        # The live learner's key was re-wrapped and still opens their data.
        opened = await vault_for(client, after).keys_for([live], create=False)
        assert open_personal(opened[live].key, live, boxes[live]) == secret
        stored = await db["learner_keys"].find_one({"_id": live})
        assert stored is not None and stored["wrapped"]["wrapping_key_id"] == "m2"
    finally:
        await client.drop_database(database)
        await client.close()


async def test_personal_submission_fields_are_stored_only_sealed(platform: Platform) -> None:
    """What MongoDB writes for an enrolment (and so what its oplog keeps) holds the
    learner's names, date of birth, postcode and background only as ciphertext under
    the learner's data key; reads of a live learner's enrolment still return them."""
    doc = submission(
        given_names="Sealed " + token(10, string.ascii_lowercase),
        family_name="Yy" + token(10, string.ascii_lowercase),
        postcode="OL9 6QQ",
        date_of_birth="1957-11-23",
        country_of_birth="TV",
        year_of_arrival=1977,
        interests=["zz" + token(10, string.ascii_lowercase)],
    )
    headers = platform.auth(platform.keys.provider_gm)
    created = await platform.enrolment.post("/v1/enrolments", json=doc, headers=headers)
    assert created.status_code == 201, created.text
    stored = await platform.enrolment_db["enrolments"].find_one(
        {"_id": created.json()["enrolment_id"]}
    )
    assert stored is not None and stored.get("submission_sealed")
    raw = bytes(BSON.encode(stored))
    for value in (
        doc["given_names"],
        doc["family_name"],
        doc["postcode"],
        doc["date_of_birth"],
        doc["interests"][0],
    ):
        assert value.encode() not in raw, value
    assert set(PERSONAL_SUBMISSION_FIELDS).isdisjoint(stored["submission"])
    assert stored["submission"]["learner_ref"] == doc["learner_ref"]

    got = await platform.enrolment.get(created.json()["href"], headers=headers)
    assert got.status_code == 200, got.text
    back = got.json()["submission"]
    for field in ("given_names", "family_name", "postcode", "date_of_birth", "ethnicity"):
        assert back[field] == doc[field], field
    assert back["year_of_arrival"] == 1977 and back["interests"] == doc["interests"]
