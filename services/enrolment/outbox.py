"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

Rows are read in commit order, a batch at a time. Rows sharing a Kafka key are
published one after another (per-key order is what consumers rely on); different keys
go concurrently so a batch costs about one round trip. A row is marked sent only after
the broker acknowledged it; a crash in between re-publishes it with the same ``ce_id``
(the row id), which consumers deduplicate.

One replica relays at a time (a lease in the database); the others take over when the
lease lapses. Every replica keeps a backlog estimate for HTTP backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.enrolment.repository import OutboxMessage, OutboxStore
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

Publish = Callable[[OutboxMessage], Awaitable[None]]


@dataclass(frozen=True)
class RelayConfig:
    batch_size: int = 500
    poll_interval_s: float = 0.5
    lease_ttl_s: float = 15.0
    max_backoff_s: float = 10.0


class RelayMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        self.published = telemetry.counter(
            "commonground_outbox_published_total", "Outbox rows published, by topic.", ("topic",)
        )
        self.failures = telemetry.counter(
            "commonground_outbox_publish_failures_total", "Outbox publish attempts that failed."
        )
        self.backlog = telemetry.gauge(
            "commonground_outbox_backlog", "Outbox rows committed but not yet published."
        )
        self.batch = telemetry.histogram(
            "commonground_outbox_batch_rows",
            "Rows per relay round.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
        )


class OutboxRelay:
    def __init__(
        self,
        store: OutboxStore,
        publish: Publish,
        config: RelayConfig,
        metrics: RelayMetrics,
        *,
        can_publish: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._publish = publish
        self._config = config
        self._metrics = metrics
        self._can_publish = can_publish
        self._owner = f"relay-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.backlog = 0

    def wake(self) -> None:
        """Called after a commit: publish now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published. Raises
        after marking the successes if any row failed (the caller backs off)."""
        rows = await self._store.pending(self._config.batch_size)
        if not rows:
            return 0
        by_key: dict[tuple[str, str], list[OutboxMessage]] = {}
        for row in rows:
            by_key.setdefault((row.topic, row.key), []).append(row)
        sent: list[str] = []
        failures: list[BaseException] = []

        async def publish_in_order(chain: list[OutboxMessage]) -> None:
            for row in chain:
                try:
                    await self._publish(row)
                except Exception as exc:  # keep the rest of this key for a later round
                    failures.append(exc)
                    return
                sent.append(row.id)
                self._metrics.published.labels(row.topic).inc()

        await asyncio.gather(*(publish_in_order(chain) for chain in by_key.values()))
        await self._store.mark_sent(sent)
        self._metrics.batch.observe(len(sent))
        if failures:
            self._metrics.failures.inc(len(failures))
            raise failures[0]
        return len(sent)

    async def refresh_backlog(self) -> int:
        self.backlog = await self._store.backlog()
        self._metrics.backlog.set(self.backlog)
        return self.backlog

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            drained = True
            try:
                if self._can_publish() and await self._store.acquire_lease(
                    self._owner, self._config.lease_ttl_s
                ):
                    published = await self.run_once()
                    drained = published < self._config.batch_size
                await self.refresh_backlog()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(0.2 * 2**failures, self._config.max_backoff_s)
                logger.warning(
                    "outbox relay round failed (%s); retrying in %.1fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                continue
            if drained:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.poll_interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # Let a round in progress finish (and mark its rows sent), then give up.
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        try:
            await self._store.release_lease(self._owner)
        except Exception as exc:  # the lease lapses by itself
            logger.info("could not release the relay lease: %s", type(exc).__name__)
