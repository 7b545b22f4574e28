"""How the services' HTTP server (uvicorn) is configured: proxies and slow clients.

* **Forwarded headers** are believed only from ``trusted_proxies`` (a setting, empty by
  default). uvicorn's own default trusts ``X-Forwarded-For`` from 127.0.0.1, so any
  local client (or a sidecar) could rotate the header and reset the failed-login
  limiter; here nothing is trusted unless configured.
* **Request-head timeout**: a connection that has not delivered a complete request head
  (request line and headers) within ``http_header_timeout_s`` is closed, whether it is
  new or between keep-alive requests, so slow-header clients cannot hold connections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request head."""

    head_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # a request is in progress: its head arrived in time
        logger.info("closing a connection that sent no complete request head in time")
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def protocol_for(settings: ServiceSettings) -> type[H11Protocol]:
    return type(
        "ServiceH11Protocol",
        (HeadTimeoutH11Protocol,),
        {"head_timeout_s": settings.http_header_timeout_s},
    )


def trusted_proxies(settings: ServiceSettings) -> list[str]:
    return [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]


def uvicorn_config(
    app: FastAPI, settings: ServiceSettings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    proxies = trusted_proxies(settings)
    return uvicorn.Config(
        app,
        host=host or settings.http_host,
        port=settings.http_port if port is None else port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        http=protocol_for(settings),
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or [],
    )
