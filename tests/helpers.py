"""Small test helpers: polling instead of sleeping, running an app in-process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from fastapi import FastAPI

from shared.record_signing import sign_record
from shared.topics import ENROLMENT_INBOUND

T = TypeVar("T")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def send_signed(
    producer: AIOKafkaProducer,
    api_key: str,
    ukprn: str,
    value: bytes,
    headers: Sequence[tuple[str, bytes]] = (),
    *,
    topic: str = ENROLMENT_INBOUND,
    timestamp_ms: int | None = None,
) -> RecordMetadata:
    """Produce ``value`` keyed with ``ukprn`` as a provider does: signed with its API key."""
    key = ukprn.encode()
    signature = sign_record(api_key, topic, key, value, timestamp_ms=timestamp_ms)
    result: RecordMetadata = await producer.send_and_wait(
        topic, value, key=key, headers=[*headers, *signature]
    )
    return result


async def poll_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Await ``probe()`` until it returns a truthy value (never ``None``, so a probe typed
    ``-> X | None`` gives an ``X``); fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan (real broker and database clients) and give an HTTP client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
