"""Oversized and malformed input is refused early and cheaply, on every POST endpoint.

For each POST route of each service (enumerated from the apps, so a new endpoint is
covered automatically): a 10 MB body announced by Content-Length, a 10 MB body streamed
without one, and deeply nested JSON. The streamed body counts how much of it the server
actually pulled: a refusal must come after reading at most the size limit, never the
whole body. ``/healthz`` is asked while the floods are in flight and after them.
Field limits (string lengths, batch length, availability slots, interests) are checked
on the endpoints that have them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.security.conftest import Platform, submission
from tests.security.test_authorization import api_routes, enrolment_of

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)

TEN_MB = 10 * 1024 * 1024
CHUNK = 64 * 1024
DEPTH = 50_000


def post_routes(platform: Platform) -> list[tuple[str, str]]:
    return sorted(
        (service, path)
        for service, app in platform.apps.items()
        for method, path in api_routes(app)
        if method == "POST"
    )


def body_types(platform: Platform, service: str, path: str) -> list[str]:
    """The media types the route documents for its body (none for a bodyless action)."""
    operation = platform.apps[service].openapi()["paths"][path]["post"]
    return list(operation.get("requestBody", {}).get("content", {}))


def media_type(documented: list[str]) -> str:
    """JSON unless the route says otherwise (the ILR upload's XML): a flood must reach the
    size check, not a 415 in front of it."""
    if not documented or "application/json" in documented:
        return "application/json"
    return documented[0]


def client_and_key(platform: Platform, service: str) -> tuple[httpx.AsyncClient, str]:
    return {
        "enrolment": (platform.enrolment, platform.keys.provider_gm),
        "matching": (platform.matching, platform.keys.coordinator_gm),
        "reporting": (platform.reporting, platform.keys.analyst),
    }[service]


def concrete(path: str) -> str:
    return (
        path.replace("{enrolment_id}", "enr_" + "0" * 32)
        .replace("{match_id}", "match-x")
        .replace("{volunteer_id}", "vol-x")
    )


class Counted:
    """A streamed body that records how many bytes the server pulled from it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"[" + b" " * (CHUNK - 1)
        while self.pulled < self.total:
            self.pulled += len(chunk)
            yield chunk


async def healthz(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    response = await client.get("/healthz")
    assert response.status_code == 200
    return time.perf_counter() - started


async def test_every_post_endpoint_refuses_huge_and_deep_bodies_cheaply(
    platform: Platform,
) -> None:
    routes = post_routes(platform)
    assert len(routes) >= 7
    latencies: list[float] = []
    for service, path in routes:
        client, key = client_and_key(platform, service)
        documented = body_types(platform, service, path)
        headers = {**platform.auth(key), "content-type": media_type(documented)}
        url = concrete(path)

        announced = client.post(url, content=b"[" * TEN_MB, headers=headers)
        streamed_body = Counted(TEN_MB)
        streamed = client.post(url, content=streamed_body, headers=headers)
        deep = client.post(url, content=b"[" * DEPTH + b"]" * DEPTH, headers=headers)
        results = await asyncio.gather(announced, streamed, deep, healthz(client))
        big, chunked, nested, during = results
        latencies.append(during)
        latencies.append(await healthz(client))

        # A bodyless action never reads a streamed body: it answers as without one.
        for response in (big, chunked) if documented else (big,):
            assert response.status_code == 413, (service, path, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"
        assert 400 <= chunked.status_code < 500, (service, path, chunked.text[:200])
        # Refused after reading at most the limit (plus one chunk), not 10 MB.
        assert streamed_body.pulled <= 4 * 1024 * 1024 + 2 * CHUNK, (service, path)
        # 413 where the deep document is also over the route's limit (64 KiB routes); a
        # bodyless action does not parse it and answers as it would without one.
        refusals = (400, 413, 422) if documented else tuple(range(400, 500))
        assert nested.status_code in refusals, (service, path, nested.text[:200])
        assert nested.headers["content-type"] == "application/problem+json"
    logger.info(
        "healthz during/after floods: max %.1f ms over %d probes",
        max(latencies) * 1000,
        len(latencies),
    )


async def expect_422(response: httpx.Response, pointer: str) -> None:
    assert response.status_code == 422, response.text[:300]
    pointers = [e["pointer"] for e in response.json()["errors"]]
    assert any(p.endswith(pointer) for p in pointers), pointers


async def test_field_limits_are_enforced(platform: Platform) -> None:
    e, auth = platform.enrolment, platform.auth(platform.keys.provider_gm)
    await expect_422(
        await e.post("/v1/enrolments", json=submission(given_names="A" * 101), headers=auth),
        "/given_names",
    )
    slots = [
        f"{d}-{p}"
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        for p in ("am", "pm", "eve")
    ]
    await expect_422(
        await e.post(
            "/v1/enrolments", json=submission(availability=[*slots, "mon-am"]), headers=auth
        ),
        "/availability",
    )
    await expect_422(
        await e.post(
            "/v1/enrolments",
            json=submission(interests=[f"topic {i}" for i in range(21)]),
            headers=auth,
        ),
        "/interests",
    )
    await expect_422(
        await e.post("/v1/enrolments", json=submission(interests=["x" * 41]), headers=auth),
        "/interests/0",
    )
    too_many = await e.post(
        "/v1/enrolments/batch",
        json={"items": [{"learner_ref": "x"}] * 1001},
        headers=auth,
    )
    assert too_many.status_code == 413 and too_many.json()["errors"][0]["pointer"] == "/items"
    mine = await enrolment_of(platform, platform.keys.provider_gm)
    unknown_field = await e.post(
        mine["href"] + "/consent", json={"matching": True, "research": True, "x": 1}, headers=auth
    )
    await expect_422(unknown_field, "/x")

    m, coord = platform.matching, platform.auth(platform.keys.coordinator_gm)
    volunteer: dict[str, Any] = {
        "local_authority": "E08000004",
        "capacity": 1,
        "dbs_expires_on": "2030-01-01",
        "availability": ["mon-am"],
    }
    await expect_422(
        await m.post("/v1/volunteers", json={**volunteer, "interests": ["a"] * 31}, headers=coord),
        "/interests",
    )
    await expect_422(
        await m.post("/v1/volunteers", json={**volunteer, "languages": ["l" * 41]}, headers=coord),
        "/languages/0",
    )
    await expect_422(
        await m.post("/v1/volunteers", json={**volunteer, "capacity": 11}, headers=coord),
        "/capacity",
    )
    decline = {"decision": "decline", "reason": "r" * 501}
    await expect_422(
        await m.post("/v1/matches/match-x/decision", json=decline, headers=coord), "/reason"
    )
