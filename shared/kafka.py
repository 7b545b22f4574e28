"""Kafka plumbing: broker construction with telemetry, CloudEvent publishing, topic set-up."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.cloudevents import CloudEvent, Event
from shared.settings import ServiceSettings
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)


def make_broker(settings: ServiceSettings, telemetry: Telemetry, **overrides: Any) -> KafkaBroker:
    """A FastStream Kafka broker with the platform's middlewares.

    ``enable_idempotence`` stays off: Tansu (memory storage) rejects idempotent
    producers. ``acks='all'`` keeps publishes durable on a real cluster.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id or settings.service_name,
        "security": settings.kafka_security(),
        "acks": "all",
        "enable_idempotence": False,
        "middlewares": telemetry.kafka_middlewares(),
        "description": f"Common Ground {settings.service_name} service",
        "graceful_timeout": 15.0,
        "logger": logging.getLogger(f"faststream.{settings.service_name}"),
    }
    options.update(overrides)
    return KafkaBroker(**options)


async def publish_event(
    broker: KafkaBroker, topic: str, event: CloudEvent[Event], *, key: str
) -> RecordMetadata:
    """Publish one CloudEvent in Kafka binary mode and wait for the broker's ack.

    The publish runs in the trace context the event was created in, so FastStream's
    telemetry middleware links it (and its consumers) to the originating request even
    when an outbox relay publishes it later."""
    token = None
    if event.traceparent:
        token = otel_context.attach(
            TraceContextTextMapPropagator().extract({"traceparent": event.traceparent})
        )
    try:
        return await broker.publish(
            event.body(), topic=topic, key=key.encode(), headers=event.headers()
        )
    finally:
        if token is not None:
            otel_context.detach(token)


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int = 4,
    replication_factor: int = 1,
    security: BaseSecurity | None = None,
) -> list[str]:
    """Create missing topics (idempotent). Returns the names that were created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="commonground-admin",
        **aiokafka_security_kwargs(security),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for name in (n for n in names if n not in existing):
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=name,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                logger.debug("topic %s appeared concurrently", name)
        return created
    finally:
        await admin.close()


def aiokafka_security_kwargs(security: BaseSecurity | None) -> dict[str, Any]:
    """FastStream security object → plain aiokafka client keyword arguments."""
    if security is None:
        return {}
    from faststream.kafka.security import parse_security

    return dict(parse_security(security))
