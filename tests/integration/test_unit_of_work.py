"""The shared unit of work on the real database server: a use case's writes and the
events it publishes commit together, vanish together, and a write conflict between two
concurrent units of work runs the loser again from its reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared.cloudevents import CloudEvent
from shared.contracts.enrolment import LearnerErased
from shared.outbox import MongoOutbox, OutboxMessage
from shared.unit_of_work import MongoUnitOfWork


class Boom(Exception):
    pass


@pytest.fixture
async def database(scratch_database: AsyncDatabase[Any]) -> AsyncDatabase[Any]:
    return scratch_database


def message(key: str) -> OutboxMessage:
    event = LearnerErased(learner=key, erased_at=datetime.now(UTC))
    return OutboxMessage.of(
        CloudEvent(data=event, source="/tests/unit-of-work"), topic="t", key=key
    )


async def test_writes_and_events_commit_together(database: AsyncDatabase[Any]) -> None:
    outbox = MongoOutbox(database, retention_s=3600)
    uow = MongoUnitOfWork(database.client, outbox)

    async def work(u: MongoUnitOfWork) -> str:
        await database["things"].insert_one({"_id": "a", "n": 1}, session=u.session)
        u.publish([message("learner-a")])
        return "done"

    assert await uow.run(work) == "done"
    assert await database["things"].find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    rows = await database["outbox"].find().to_list()
    assert [m["key"] for row in rows for m in row["messages"]] == ["learner-a"]
    assert uow.session is None  # the session belongs to the run


async def test_a_failing_use_case_leaves_nothing(database: AsyncDatabase[Any]) -> None:
    outbox = MongoOutbox(database, retention_s=3600)

    async def work(u: MongoUnitOfWork) -> None:
        await database["things"].insert_one({"_id": "b"}, session=u.session)
        u.publish([message("learner-b")])
        raise Boom

    with pytest.raises(Boom):
        await MongoUnitOfWork(database.client, outbox).run(work)
    assert await database["things"].count_documents({}) == 0
    assert await database["outbox"].count_documents({}) == 0


async def test_publishing_without_an_outbox_is_refused(database: AsyncDatabase[Any]) -> None:
    async def work(u: MongoUnitOfWork) -> None:
        u.publish([message("learner-c")])

    with pytest.raises(RuntimeError, match="no outbox"):
        await MongoUnitOfWork(database.client).run(work)


async def test_a_write_conflict_runs_the_loser_again_from_its_reads(
    database: AsyncDatabase[Any],
) -> None:
    """Two units of work increment one counter by read-then-write; both commit and the
    counter is exact, because the one that lost the conflict re-read the value."""
    things = database["things"]
    await things.insert_one({"_id": "counter", "n": 0})
    both_read = asyncio.Barrier(2)
    attempts = 0

    async def increment(u: MongoUnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        doc = await things.find_one({"_id": "counter"}, session=u.session)
        assert doc is not None
        if attempts <= 2:
            await both_read.wait()  # both first attempts read 0 before either writes
        await things.update_one(
            {"_id": "counter"}, {"$set": {"n": doc["n"] + 1}}, session=u.session
        )

    await asyncio.gather(
        MongoUnitOfWork(database.client).run(increment),
        MongoUnitOfWork(database.client).run(increment),
    )
    assert (await things.find_one({"_id": "counter"}) or {})["n"] == 2
    assert attempts >= 3  # the loser ran again
