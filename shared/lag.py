"""Consumer lag per topic, partition and group, exported as a Prometheus gauge.

Lag = end offset - committed offset of the group (or - beginning offset when the group
has committed nothing yet), measured from the broker itself so it is right however many
instances share the group. Ops look at lag first in an event-driven system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import BaseSecurity

from shared.tasks import background
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)


class ConsumerLagMonitor:
    def __init__(
        self,
        telemetry: Telemetry,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Iterable[str],
        security: BaseSecurity | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._group = group_id
        self._topics = sorted(set(topics))
        self._security = security
        self._gauge = telemetry.gauge(
            "commonground_consumer_lag",
            "Records not yet committed by the consumer group (end offset - committed offset).",
            ("topic", "partition", "group"),
        )
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        from shared.kafka import aiokafka_security_kwargs

        extra = aiokafka_security_kwargs(self._security)
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id=f"{self._group}-lag", **extra
        )
        # A group-less consumer only reads metadata and end offsets; it never joins.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._group}-lag",
            enable_auto_commit=False,
            **extra,
        )
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def measure(self) -> dict[TopicPartition, int]:
        assert self._admin is not None and self._consumer is not None, "start() first"
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            ids = self._consumer.partitions_for_topic(topic)
            if ids is None:
                await self._consumer.topics()  # refreshes cluster metadata
                ids = self._consumer.partitions_for_topic(topic) or set()
            partitions.extend(TopicPartition(topic, p) for p in sorted(ids))
        if not partitions:
            return {}
        # Explicit partitions: Tansu does not answer an OffsetFetch for "all".
        committed = await self._admin.list_consumer_group_offsets(
            self._group, partitions=partitions
        )
        end = await self._consumer.end_offsets(partitions)
        beginning = await self._consumer.beginning_offsets(partitions)
        lag: dict[TopicPartition, int] = {}
        for tp in partitions:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else beginning[tp]
            lag[tp] = max(0, end[tp] - position)
            self._gauge.labels(tp.topic, str(tp.partition), self._group).set(lag[tp])
        return lag

    async def run(self, interval_s: float) -> None:
        """Measure forever; a failed measurement is logged and retried next interval."""
        while True:
            try:
                await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.info("consumer lag not measured this time: %s", type(exc).__name__)
            await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def lag_monitoring(monitor: ConsumerLagMonitor, interval_s: float):  # type: ignore[no-untyped-def]
    """Run ``monitor`` in the background for the duration of the block."""
    await monitor.start()
    try:
        async with background(monitor.run(interval_s), name="consumer-lag"):
            yield monitor
    finally:
        await monitor.stop()
