"""commonground_consumer_lag rises while a consumer group is stopped and falls back to
zero once it resumes, measured on the real broker."""

from __future__ import annotations

import re

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import ensure_topics
from shared.lag import ConsumerLagMonitor
from shared.service import Runtime, create_service_app
from shared.settings import ServiceSettings
from shared.telemetry import Telemetry
from tests.helpers import poll_until, running_app, unique
from tests.infra import Infra


class LagProbeSettings(ServiceSettings):
    consumer_lag_interval_s: float = 0.3


def lag_app(topic: str, group: str, seen: list[bytes]) -> FastAPI:
    def routers(runtime: Runtime) -> list[KafkaRouter]:
        router = KafkaRouter()

        @router.subscriber(
            topic, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK
        )
        async def consume(message: KafkaMessage) -> None:
            record = message.raw_message
            assert not isinstance(record, tuple)  # one record per call (no batch subscriber)
            seen.append(record.value)

        return [router]

    settings = LagProbeSettings(consumer_group=group)
    return create_service_app(
        settings, title="lag probe", description="test app", kafka_routers=routers
    )


def total_lag(metrics: str, topic: str, group: str) -> float:
    labels = f'group="{re.escape(group)}",partition="\\d+",topic="{re.escape(topic)}"'
    pattern = re.compile(r"^commonground_consumer_lag\{" + labels + r"\} (\S+)$", re.M)
    values = [float(v) for v in pattern.findall(metrics)]
    return sum(values) if values else -1.0


async def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, f"record-{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()


async def test_lag_rises_while_stopped_and_falls_after_resume(platform_env: Infra) -> None:
    topic, group = unique("lagtest"), unique("laggroup")
    await ensure_topics(platform_env.kafka_bootstrap_servers, [topic], partitions=2)
    seen: list[bytes] = []

    async with running_app(lag_app(topic, group, seen)) as client:
        await produce(platform_env.kafka_bootstrap_servers, topic, 3)

        async def caught_up() -> bool:
            return (
                total_lag((await client.get("/metrics")).text, topic, group) == 0 and len(seen) == 3
            )

        await poll_until(caught_up, timeout_s=30, what="the first records to be consumed")

    # Consumer stopped: new records pile up and the lag, measured from the broker by a
    # separate monitor (as ops would), rises by exactly that many.
    await produce(platform_env.kafka_bootstrap_servers, topic, 7)
    monitor = ConsumerLagMonitor(
        Telemetry("ops"),
        bootstrap_servers=platform_env.kafka_bootstrap_servers,
        group_id=group,
        topics=[topic],
    )
    await monitor.start()
    try:
        assert sum((await monitor.measure()).values()) == 7
    finally:
        await monitor.stop()

    async with running_app(lag_app(topic, group, [])) as client:

        async def drained() -> bool:
            return total_lag((await client.get("/metrics")).text, topic, group) == 0

        await poll_until(drained, timeout_s=30, what="lag to fall back to zero")
