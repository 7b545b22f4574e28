"""Kafka plumbing: broker construction with telemetry, CloudEvent publishing, topic set-up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity
from opentelemetry import context as otel_context
from opentelemetry import trace
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


_PROPAGATOR = TraceContextTextMapPropagator()


class DirectSender:
    """Sends already-encoded records (an outbox's stored bytes) through the aiokafka
    producer the FastStream broker started, without FastStream's per-message publish
    pipeline (codec, two spans, OpenTelemetry metrics, Prometheus middleware): the
    relay's hot path (bench/RESULTS.md, issue 18). It keeps what that pipeline gives
    operators: a ``<topic> publish`` producer span per record, child of the trace the
    event was created in, whose context travels in the record's ``traceparent`` header
    (consumers continue the trace), and ``faststream_published_messages_total`` /
    ``..._duration_seconds`` / ``..._exceptions_total`` by destination, as FastStream's
    Prometheus middleware counts them.

    :meth:`available` is False before the broker started (or under FastStream's test
    broker): callers then publish through :func:`publish_event`.
    """

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker
        self._tracer: trace.Tracer = trace.get_tracer("commonground.kafka")
        self._metrics: Any = None
        self._labels: dict[str, str] = {}
        self._parents: dict[str, otel_context.Context] = {}
        for middleware in broker.config.broker_middlewares:
            tracer = getattr(middleware, "_tracer", None)
            if isinstance(tracer, trace.Tracer):
                self._tracer = tracer
            manager = getattr(middleware, "_metrics_manager", None)
            if manager is not None and hasattr(manager, "add_published_message"):
                self._metrics = manager
                self._labels = dict(getattr(middleware, "_static_labels", {}) or {})

    def _parent(self, traceparent: str | None) -> otel_context.Context | None:
        """The trace context of ``traceparent`` (the events of one request share it:
        parsed once, remembered for a while)."""
        if not traceparent:
            return None
        parent = self._parents.get(traceparent)
        if parent is None:
            if len(self._parents) >= 1024:
                self._parents.clear()
            parent = self._parents[traceparent] = _PROPAGATOR.extract({"traceparent": traceparent})
        return parent

    def _producer(self) -> AIOKafkaProducer | None:
        state = getattr(self._broker.config.producer, "_producer", None)
        producer = getattr(state, "producer", None)
        return producer if isinstance(producer, AIOKafkaProducer) else None

    def available(self) -> bool:
        return self._producer() is not None

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: str,
        headers: Mapping[str, str],
        traceparent: str | None,
    ) -> RecordMetadata:
        """Send one record and wait for the broker's ack (``acks`` as configured)."""
        producer = self._producer()
        if producer is None:
            raise RuntimeError("the Kafka producer is not started")
        parent = self._parent(traceparent)
        span = self._tracer.start_span(
            f"{topic} publish",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        record_headers = [(k, v.encode()) for k, v in headers.items() if k != "traceparent"]
        record_headers += [(k, v.encode()) for k, v in carrier.items()]
        started = time.perf_counter()
        try:
            future = await producer.send(topic, value, key=key.encode(), headers=record_headers)
            metadata: RecordMetadata = await future
        except (Exception, asyncio.CancelledError) as exc:
            span.record_exception(exc)
            span.end()
            self._count(topic, "error", started, exc)
            raise
        span.end()
        self._count(topic, "success", started, None)
        return metadata

    def _count(self, topic: str, status: str, started: float, exc: BaseException | None) -> None:
        if self._metrics is None:
            return
        from faststream.prometheus.types import PublishingStatus

        try:
            self._metrics.add_published_message(
                broker="kafka",
                destination=topic,
                status=PublishingStatus(status),
                **self._labels,
            )
            self._metrics.observe_published_message_duration(
                duration=time.perf_counter() - started,
                broker="kafka",
                destination=topic,
                **self._labels,
            )
            if exc is not None:
                self._metrics.add_published_message_exception(
                    broker="kafka",
                    destination=topic,
                    exception_type=type(exc).__name__,
                    **self._labels,
                )
        except Exception as error:  # metrics never break publishing
            logger.debug("publish metrics not recorded: %s", type(error).__name__)


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
