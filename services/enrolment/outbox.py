"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

Rows (each the events of one transaction) are read in commit order, about
``batch_size`` messages at a time. Messages sharing a Kafka key are published one after
another (per-key order is what consumers rely on); different keys go concurrently, so a
round costs about one broker round trip. A row is marked sent only after the broker
acknowledged all its messages; otherwise the whole row goes again in a later round with
the same ``ce_id``s (fixed in the row), which consumers deduplicate.

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

from services.enrolment.repository import OutboxMessage, OutboxRow, OutboxStore
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

Publish = Callable[[OutboxMessage], Awaitable[None]]


class UnpublishableMessage(Exception):
    """A stored event that can never be published as it is (it no longer decodes as its
    contract type). Its row is parked, not retried, so it cannot stall the relay."""


@dataclass(frozen=True)
class RelayConfig:
    batch_size: int = 500
    poll_interval_s: float = 0.5
    lease_ttl_s: float = 15.0
    linger_s: float = 0.05
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
        """Publish one round of pending rows; returns how many messages were published.
        Raises after marking the complete rows if any message failed (caller backs off)."""
        rows = await self._store.pending(self._config.batch_size)
        if not rows:
            return 0
        chains: dict[tuple[str, str], list[tuple[OutboxRow, OutboxMessage]]] = {}
        for row in rows:
            for message in row.messages:
                chains.setdefault((message.topic, message.key), []).append((row, message))
        failed_rows: set[str] = set()
        parked_rows: set[str] = set()
        failures: list[BaseException] = []
        published = 0

        async def publish_in_order(chain: list[tuple[OutboxRow, OutboxMessage]]) -> None:
            nonlocal published
            for position, (row, message) in enumerate(chain):
                try:
                    await self._publish(message)
                except UnpublishableMessage as exc:
                    logger.error(
                        "outbox message %s (row %s) cannot be published: %s; row parked",
                        message.id,
                        row.id,
                        exc,
                    )
                    parked_rows.add(row.id)
                    continue
                except Exception as exc:  # the rest of this key waits for a later round
                    failures.append(exc)
                    failed_rows.update(r.id for r, _ in chain[position:])
                    return
                published += 1
                self._metrics.published.labels(message.topic).inc()

        await asyncio.gather(*(publish_in_order(chain) for chain in chains.values()))
        done = [row.id for row in rows if row.id not in failed_rows | parked_rows]
        await self._store.mark_sent(done)
        if parked_rows - failed_rows:
            await self._store.mark_parked(sorted(parked_rows - failed_rows))
        self._metrics.batch.observe(published)
        if failures:
            self._metrics.failures.inc(len(failures))
            raise failures[0]
        return published

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
                    drained = published == 0
                await self.refresh_backlog()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(0.2 * 2**failures, self._config.max_backoff_s)
                # Rows stay pending and go again; during shutdown this is expected.
                logger.log(
                    logging.WARNING if self._can_publish() else logging.INFO,
                    "outbox relay round failed (%s); retrying in %.1fs",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if drained:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._config.poll_interval_s)
                except TimeoutError:
                    continue
                # Woken by a commit: linger a moment so that commits arriving together
                # share a round (each round costs several database writes).
                await asyncio.sleep(self._config.linger_s)

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
