"""The enrolment unit of work on the real database server: a taken id or a stale version
leaves nothing of the transaction, concurrent submissions of one enrolment store (and
announce) it once, and consent changes and erasure commit with their events."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.enrolment.domain import Enrolment, accept
from services.enrolment.privacy import LearnerVault, SubmissionSealer
from services.enrolment.repository import AlreadyExists, VersionConflict
from services.enrolment.unit_of_work import EnrolmentUnitOfWork, unit_of_work_factory
from services.enrolment.use_cases.events import event_message
from services.enrolment.use_cases.intake import (
    Channel,
    EnrolmentService,
    IntakeMetrics,
    ItemStatus,
)
from services.enrolment.use_cases.privacy import PrivacyService
from shared.auth import Principal, Role
from shared.contracts.enrolment import Consent, EnrolmentSubmission
from shared.crypto import KeyRing
from shared.outbox import MongoOutbox
from shared.telemetry import Telemetry
from tests.unit.enrolment.enrolment_fakes import (
    NOW,
    PROVIDER,
    PSEUDONYMS,
    FakeProviders,
    submission,
)


@pytest.fixture
async def database(scratch_database: AsyncDatabase[Any]) -> AsyncDatabase[Any]:
    return scratch_database


def enrolment(learner_ref: str) -> Enrolment:
    raw = EnrolmentSubmission.model_validate(submission(learner_ref=learner_ref))
    return accept(raw, PROVIDER, PSEUDONYMS, NOW)[0]


def unit_of_work(db: AsyncDatabase[Any]) -> EnrolmentUnitOfWork:
    return EnrolmentUnitOfWork(db.client, db, MongoOutbox(db, retention_s=3600))


async def test_a_taken_id_is_already_exists_and_nothing_is_kept(
    database: AsyncDatabase[Any],
) -> None:
    first, second = enrolment("T1"), enrolment("T2")

    async def add_first(uow: EnrolmentUnitOfWork) -> None:
        await uow.enrolments.add([first])

    await unit_of_work(database).run(add_first)

    async def add_both(uow: EnrolmentUnitOfWork) -> None:
        await uow.enrolments.add([second, first])
        raise AssertionError("the insert of a taken id raises")

    with pytest.raises(AlreadyExists):
        await unit_of_work(database).run(add_both)
    assert await database["enrolments"].distinct("_id") == [first.enrolment_id]
    assert await database["outbox"].count_documents({}) == 0


async def test_a_stale_version_is_a_conflict_and_nothing_is_kept(
    database: AsyncDatabase[Any],
) -> None:
    stored = enrolment("V1")
    _, events = accept(stored.submission, PROVIDER, PSEUDONYMS, NOW)

    async def add(uow: EnrolmentUnitOfWork) -> None:
        await uow.enrolments.add([stored])

    await unit_of_work(database).run(add)

    async def save(uow: EnrolmentUnitOfWork) -> None:
        current = await uow.enrolments.get(stored.enrolment_id)
        assert current is not None
        uow.publish([event_message(events[0], current)])
        await uow.enrolments.save(replace(current, applied_progress=("x",)), current.version + 1)

    with pytest.raises(VersionConflict):
        await unit_of_work(database).run(save)
    assert await database["outbox"].count_documents({}) == 0
    again = await unit_of_work(database).enrolments.get(stored.enrolment_id)
    assert again is not None and again.version == stored.version


async def test_concurrent_submissions_of_one_enrolment_store_it_once(
    database: AsyncDatabase[Any],
) -> None:
    outbox = MongoOutbox(database, retention_s=3600)
    metrics = IntakeMetrics(Telemetry(service_name="enrolment-uow-integration"))

    def service() -> EnrolmentService:
        return EnrolmentService(
            unit_of_work_factory(database.client, database, outbox),
            FakeProviders(PROVIDER),
            PSEUDONYMS,
            metrics,
            clock=lambda: NOW,
        )

    doc = submission(learner_ref="C1")
    results = await asyncio.gather(
        *(service().submit(PROVIDER, [doc], Channel.HTTP) for _ in range(4))
    )
    statuses = sorted(r.status for (r,) in results)
    assert statuses == [ItemStatus.CREATED] + [ItemStatus.DUPLICATE] * 3
    assert await database["enrolments"].count_documents({}) == 1
    rows = await database["outbox"].find().to_list()
    types = [m["headers"]["ce_type"].split(".")[2] for row in rows for m in row["messages"]]
    assert types == ["EnrolmentAccepted", "ParticipantOptedIn"]


def event_types(rows: list[dict[str, Any]]) -> list[str]:
    return [m["headers"]["ce_type"].split(".")[2] for row in rows for m in row["messages"]]


async def test_consent_change_and_erasure_commit_with_their_events(
    database: AsyncDatabase[Any],
) -> None:
    outbox = MongoOutbox(database, retention_s=3600)
    vault = LearnerVault(
        database,
        master=KeyRing.parse("m1:integration-master-secret-0123456789", "master"),
        platform=KeyRing.parse("p1:integration-platform-secret-0123456789", "platform"),
    )
    unit_of_work = unit_of_work_factory(database.client, database, outbox, SubmissionSealer(vault))
    service = EnrolmentService(
        unit_of_work,
        FakeProviders(PROVIDER),
        PSEUDONYMS,
        IntakeMetrics(Telemetry(service_name="enrolment-uow-privacy")),
        clock=lambda: NOW,
        vault=vault,
    )
    privacy = PrivacyService(service, unit_of_work, vault, clock=lambda: NOW)
    (created,) = await service.submit(PROVIDER, [submission(learner_ref="P1")], Channel.HTTP)
    assert created.enrolment_id is not None
    stored = await service.get(PROVIDER, created.enrolment_id)
    assert stored is not None and stored.submission.given_names == "Amira"  # opened

    changed = await privacy.change_consent(
        PROVIDER, created.enrolment_id, Consent(matching=False, research=False)
    )
    assert changed is not None and changed[1] is True
    assert changed[0].version == stored.version + 1
    again = await privacy.change_consent(
        PROVIDER, created.enrolment_id, Consent(matching=False, research=False)
    )
    assert again is not None and again[1] is False
    assert event_types(await database["outbox"].find().sort("seq", 1).to_list()) == [
        "LearnerKeyIssued",
        "EnrolmentAccepted",
        "ParticipantOptedIn",
        "ConsentChanged",
    ]

    officer = Principal(principal_id="dpo", name="DPO", role=Role.DATA_PROTECTION)
    erased = await privacy.erase(officer, stored.learner)
    assert not erased.already_erased and erased.enrolment_ids == (created.enrolment_id,)
    assert await database["enrolments"].count_documents({}) == 0
    assert await database["learner_keys"].count_documents({}) == 0
    record = await database["erased_learners"].find_one({"_id": stored.learner})
    assert record is not None and record["erased_by"] == "dpo"
    # The learner's wrapped key was withdrawn from the outbox; the erasure announced.
    assert event_types(await database["outbox"].find().sort("seq", 1).to_list()) == [
        "EnrolmentAccepted",
        "ParticipantOptedIn",
        "ConsentChanged",
        "LearnerErased",
    ]
    repeat = await privacy.erase(officer, stored.learner)
    assert repeat.already_erased
