"""Background work of the matching service, started in its lifespan:

* the batch scheduler (evaluates the batch policy, runs the optimiser per authority),
* the DBS check (announces lapsed DBS checks once each, idempotently),
* the outbox relay (publishes committed outbox rows; CloudEvent id = outbox row id).

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

from faststream.kafka import KafkaBroker

from services.matching.metrics import MatchingMetrics
from services.matching.repository import MatchingRepository
from services.matching.use_cases import MatchingService, utc_now
from shared.cloudevents import CloudEvent, Event, EventRegistry
from shared.kafka import publish_event

logger = logging.getLogger(__name__)

EVENT_SOURCE = "/commonground/matching"


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Leases:
    """Named leases held by this instance (renewed on every successful acquire)."""

    def __init__(self, repo: MatchingRepository, owner: str, ttl: timedelta) -> None:
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


class OutboxRelay:
    """Publishes outbox rows in commit order, then marks them published."""

    def __init__(
        self,
        repo: MatchingRepository,
        broker: KafkaBroker,
        registry: EventRegistry,
        metrics: MatchingMetrics,
        *,
        acquire: Callable[[str], Awaitable[bool]],
        batch_size: int,
    ) -> None:
        self._repo = repo
        self._broker = broker
        self._models: dict[str, type[Event]] = {m.ce_type(): m for m in registry.models}
        self._metrics = metrics
        self._acquire = acquire
        self._batch_size = batch_size
        self.wake = asyncio.Event()

    def notify(self) -> None:
        self.wake.set()

    async def drain(self) -> int:
        """Publish until the outbox is empty (or the broker is not running)."""
        total = 0
        while True:
            published = await self.publish_batch()
            total += published
            if published < self._batch_size:
                return total

    async def publish_batch(self) -> int:
        if not self._broker.running or not await self._acquire("outbox-relay"):
            return 0
        rows = await self._repo.pending_outbox(self._batch_size)
        done: list[str] = []
        try:
            for row in rows:
                event = CloudEvent(
                    data=self._models[row.ce_type].model_validate(row.payload),
                    source=EVENT_SOURCE,
                    id=row.id,
                    time=row.created_at,
                )
                await publish_event(self._broker, row.topic, event, key=row.key)
                done.append(row.id)
        except Exception:
            if self._broker.running:
                raise
            logger.info("broker stopped: %d outbox row(s) left for later", len(rows) - len(done))
        finally:
            # Whatever was acknowledged is marked, even if a later publish failed; a
            # crash before this line means a re-publish with the same ce_id.
            await self._repo.mark_published(done, utc_now())
            self._metrics.outbox_published.inc(len(done))
            backlog = await self._repo.outbox_backlog() if rows else 0
            self._metrics.outbox_backlog.set(backlog)
        return len(done)


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
        outbox_poll_interval_s: float,
    ) -> None:
        self._service = service
        self._relay = relay
        self._leases = leases
        self._intervals = (scheduler_tick_s, dbs_check_interval_s, outbox_poll_interval_s)
        self._tasks: list[asyncio.Task[None]] = []

    async def _dbs_check(self) -> None:
        if await self._leases.acquire("dbs-check"):
            await self._service.check_dbs()

    def start(self) -> None:
        tick, dbs, poll = self._intervals
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
            asyncio.create_task(
                periodically("outbox relay", poll, self._relay.drain, self._relay.wake),
                name="matching-outbox-relay",
            ),
        ]

    async def stop(self) -> None:
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
