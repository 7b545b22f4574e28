"""Background work of the matching service, started in its lifespan:

* the batch scheduler (evaluates the batch policy, runs the optimiser per authority),
* the DBS check (announces lapsed DBS checks once each, idempotently),
* the outbox relay (``shared.outbox``: publishes committed events, re-publishes them
  after a broker lost its log).

With several replicas, leases in MongoDB keep one replica at a time on each job; all
of them are safe to repeat anyway (conditional writes, idempotent announcements,
consumers deduplicating on ``ce_id``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import timedelta

from services.matching.repository import LeaseRepository
from services.matching.use_cases import MatchingService, utc_now
from shared.outbox import OutboxRelay

logger = logging.getLogger(__name__)


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Leases:
    """Named leases held by this instance (renewed on every successful acquire)."""

    def __init__(self, repo: LeaseRepository, owner: str, ttl: timedelta) -> None:
        self._repo = repo
        self._owner = owner
        self._ttl = ttl
        self._held: set[str] = set()

    async def acquire(self, name: str) -> bool:
        acquired = await self._repo.acquire_lease(name, self._owner, self._ttl, utc_now())
        if acquired:
            self._held.add(name)
        return acquired

    async def release_all(self) -> None:
        """On shutdown: another replica (or this one restarted) can take over at once."""
        for name in sorted(self._held):
            await self._repo.release_lease(name, self._owner)
        self._held.clear()


async def periodically(
    name: str,
    interval_s: float,
    job: Callable[[], Awaitable[object]],
    wake: asyncio.Event | None = None,
) -> None:
    """Run ``job`` forever, every ``interval_s`` (sooner when ``wake`` is set). A failing
    iteration is logged and retried next time; it never ends the loop."""
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed; retrying in %.1fs", name, interval_s)
        if wake is None:
            await asyncio.sleep(interval_s)
            continue
        with suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval_s)
        wake.clear()


class Workers:
    """Starts and stops the background tasks."""

    def __init__(
        self,
        service: MatchingService,
        relay: OutboxRelay,
        leases: Leases,
        *,
        scheduler_tick_s: float,
        dbs_check_interval_s: float,
    ) -> None:
        self._service = service
        self._relay = relay
        self._leases = leases
        self._intervals = (scheduler_tick_s, dbs_check_interval_s)
        self._tasks: list[asyncio.Task[None]] = []

    async def _dbs_check(self) -> None:
        if await self._leases.acquire("dbs-check"):
            await self._service.check_dbs()

    def start(self) -> None:
        tick, dbs = self._intervals
        self._tasks = [
            asyncio.create_task(
                periodically(
                    "batch scheduler",
                    tick,
                    lambda: self._service.tick(acquire=self._leases.acquire),
                ),
                name="matching-scheduler",
            ),
            asyncio.create_task(
                periodically("DBS check", dbs, self._dbs_check), name="matching-dbs"
            ),
        ]
        self._relay.start()

    async def stop(self) -> None:
        await self._relay.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            await self._leases.release_all()
        except Exception:  # leases expire on their own; shutdown must go on
            logger.warning("could not release leases on shutdown", exc_info=True)
