"""Fixtures of the reliability tests: a log directory per module, the module's own
database server (short transaction lifetime, see database.py) and a fresh broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.reliability.broker import Broker, start_broker
from tests.reliability.config import log, log_dir
from tests.reliability.database import Database


@pytest.fixture(scope="module")
def logs() -> Path:
    path = log_dir()
    log("logs in %s", path)
    return path


@pytest.fixture(scope="module")
def database(logs: Path) -> Iterator[Database]:
    db = Database(logs)
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="module")
async def broker(logs: Path) -> AsyncIterator[Broker]:
    running = await start_broker(logs)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.kafka.stop)
