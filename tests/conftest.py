"""Session-wide fixtures: a real broker and database for integration tests.

By default the embedded Tansu broker and SecantusDB server are started on free
loopback ports once per session; see tests/infra.py for the other modes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.infra import Infra, own_broker, provide_infra

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def session_infra() -> Iterator[Infra]:
    with provide_infra() as running:
        yield running


@pytest.fixture(scope="module")
def infra(session_infra: Infra) -> Iterator[Infra]:
    """The broker and database for one test module: each module gets a fresh embedded
    broker (see ``own_broker``), so its consumers never replay other modules' events."""
    with own_broker(session_infra) as running:
        yield running


@pytest.fixture
async def scratch_database(session_infra: Infra) -> AsyncIterator[AsyncDatabase[Any]]:
    """A database of the test's own on the real server, dropped afterwards."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(session_infra.mongodb_url, tz_aware=True)
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
def platform_env(infra: Infra, monkeypatch: pytest.MonkeyPatch) -> Infra:
    """Point every service's settings at the test broker and database."""
    monkeypatch.setenv("COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS", infra.kafka_bootstrap_servers)
    monkeypatch.setenv("COMMONGROUND_MONGODB_URL", infra.mongodb_url)
    return infra


def require_tool(name: str) -> str:
    """Path of a command-line tool; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (./commonground test installs it as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        for tier in ("integration", "e2e"):
            if f"/tests/{tier}/" in path:
                item.add_marker(getattr(pytest.mark, tier))
