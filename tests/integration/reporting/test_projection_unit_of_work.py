"""Reporting's unit of work on the real database server: a batch runs on the generation
its transaction finds, so a batch racing a rebuild's swap lands on the new generation,
and one pinned to a swapped-out generation is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.reporting.repository import (
    GenerationRetired,
    Generations,
    ProjectionUnitOfWork,
    TopicPartition,
    ensure_control,
)
from shared.positions import Position
from tests.infra import Infra

TP: TopicPartition = ("reporting-uow", 0)


@pytest.fixture
async def db(session_infra: Infra) -> AsyncIterator[AsyncDatabase[Any]]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(session_infra.mongodb_url)
    name = f"reporting_uow_{uuid.uuid4().hex[:12]}"
    try:
        await ensure_control(client[name])
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def advance_to(db: AsyncDatabase[Any], generation: int, offset: int) -> None:
    async def advance(uow: ProjectionUnitOfWork) -> None:
        await uow.positions.advance({TP: Position(offset, f"e{offset}")})

    await ProjectionUnitOfWork(db, generation=generation).run(advance)


async def test_a_batch_racing_the_swap_runs_again_on_the_new_generation(
    db: AsyncDatabase[Any],
) -> None:
    generations = Generations(db)
    new = (await generations.fresh()).number
    await advance_to(db, 1, 4)
    await advance_to(db, new, 4)  # the rebuild has caught up
    found: list[int] = []
    batch_read, swapped = asyncio.Event(), asyncio.Event()

    async def batch(uow: ProjectionUnitOfWork) -> None:
        found.append((await uow.generation()).number)
        position = (await uow.positions.get([TP]))[TP]
        if len(found) == 1:
            batch_read.set()
            await swapped.wait()  # the swap commits between this batch's read and write
        await uow.positions.advance({TP: Position(position.offset + 1, "e5")})

    async def swap() -> None:
        await batch_read.wait()
        assert await generations.swap(1, new, [TP])
        swapped.set()

    await asyncio.gather(ProjectionUnitOfWork(db).run(batch), swap())
    assert found == [1, new]  # its write conflicted with the seal; run again from the read
    assert await generations.positions(new) == {TP: 5}
    assert await generations.positions(1) == {TP: 4}  # the old generation stays as sealed


async def test_a_batch_pinned_to_a_swapped_out_generation_is_refused(
    db: AsyncDatabase[Any],
) -> None:
    generations = Generations(db)
    new = (await generations.fresh()).number
    assert await generations.swap(1, new, [TP])
    attempts = 0

    async def batch(uow: ProjectionUnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await uow.positions.get([TP])

    with pytest.raises(GenerationRetired, match="kept changing"):
        await ProjectionUnitOfWork(db, generation=1, max_generation_retries=3).run(batch)
    assert attempts == 3
    # Outside a transaction the positions are only a hint: a sealed one is still read.
    assert await ProjectionUnitOfWork(db, generation=1).positions.get([TP]) == {
        TP: Position(-1, None)
    }
