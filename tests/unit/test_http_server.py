"""Issue 17 items 7 and 8: the services' uvicorn configuration (shared.http_server), on a
real socket: forwarded headers are not believed unless a proxy is configured, and a
connection that never completes its request head is closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Response

from shared.auth import FailedAuthLimiter, FailedAuthLimitMiddleware
from shared.http_server import uvicorn_config
from shared.settings import ServiceSettings


def app_refusing_everyone(max_failures: int) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/thing")
    async def thing() -> Response:
        return Response(status_code=401)

    app.add_middleware(FailedAuthLimitMiddleware, limiter=FailedAuthLimiter(max_failures, 60))
    return app


@asynccontextmanager
async def serving(app: FastAPI, settings: ServiceSettings) -> AsyncIterator[int]:
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=0))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def statuses_with_rotating_forwarded_for(port: int, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        return [
            (
                await client.get(
                    "/v1/thing",
                    headers={"X-Forwarded-For": f"198.51.100.{i}", "Authorization": "Bearer x"},
                )
            ).status_code
            for i in range(n)
        ]


async def test_forwarded_for_is_ignored_unless_a_proxy_is_configured() -> None:
    async with serving(app_refusing_everyone(3), ServiceSettings()) as port:
        statuses = await statuses_with_rotating_forwarded_for(port, 6)
    # Rotating X-Forwarded-For from loopback does not reset the failed-login limiter.
    assert statuses == [401, 401, 401, 429, 429, 429]

    trusted = ServiceSettings(trusted_proxies="127.0.0.1")
    async with serving(app_refusing_everyone(3), trusted) as port:
        statuses = await statuses_with_rotating_forwarded_for(port, 6)
    # A configured proxy's header names the client: six different clients.
    assert statuses == [401] * 6


async def test_a_connection_without_a_complete_request_head_is_closed() -> None:
    settings = ServiceSettings(http_header_timeout_s=0.5)
    async with serving(app_refusing_everyone(100), settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/thing HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        closed = await asyncio.wait_for(reader.read(), timeout=5)
        assert closed == b""  # closed by the server, nothing answered
        assert time.monotonic() - started < 3
        writer.close()

        # A complete request is served, and the keep-alive connection still works.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/thing HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 401")
        writer.close()
