"""Kafka plumbing: broker construction with telemetry, the relay's record sender, topic
set-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.settings import ServiceSettings
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)


# Shared by the FastStream broker and the relay's producer (see make_broker).
PRODUCER_OPTIONS: dict[str, Any] = {"acks": "all", "enable_idempotence": False}


def make_broker(settings: ServiceSettings, telemetry: Telemetry, **overrides: Any) -> KafkaBroker:
    """A FastStream Kafka broker with the platform's middlewares.

    ``enable_idempotence`` stays off: Tansu (memory storage) rejects idempotent
    producers. ``acks='all'`` keeps publishes durable on a real cluster.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id or settings.service_name,
        "security": settings.kafka_security(),
        **PRODUCER_OPTIONS,
        "middlewares": telemetry.kafka_middlewares(),
        "description": f"Common Ground {settings.service_name} service",
        "graceful_timeout": 15.0,
        "logger": logging.getLogger(f"faststream.{settings.service_name}"),
    }
    options.update(overrides)
    return KafkaBroker(**options)


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


_PROPAGATOR = TraceContextTextMapPropagator()


class RecordSender:
    """Sends records that are already encoded (an outbox's stored CloudEvents) with an
    aiokafka producer of its own: the outbox relay's hot path. FastStream's per-message
    publish pipeline (codec, two spans, its metrics middlewares) was three quarters of
    the relay's CPU (bench/RESULTS.md, issue 18); the relay counts its own publishes
    (``commonground_outbox_*``). Each record still gets a ``<topic> publish`` producer
    span, child of the trace the event was created in, whose context travels in the
    record's ``traceparent`` header, so consumers continue the trace.

    The producer starts on first use (a broker that is down then is an outage the relay
    retries, not a failed service start) and again after :meth:`close`."""

    def __init__(
        self, settings: ServiceSettings, tracer: trace.Tracer, *, linger_ms: int = 5
    ) -> None:
        self._settings = settings
        self._tracer = tracer
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._parents: dict[str, otel_context.Context] = {}

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    client_id=f"{self._settings.kafka_client_id or self._settings.service_name}"
                    "-relay",
                    linger_ms=self._linger_ms,
                    max_batch_size=min(
                        self._settings.kafka_relay_batch_bytes,
                        self._settings.kafka_max_request_bytes,
                    ),
                    max_request_size=self._settings.kafka_max_request_bytes,
                    **PRODUCER_OPTIONS,
                    **aiokafka_security_kwargs(self._settings.kafka_security()),
                )
                try:
                    await producer.start()
                except Exception as exc:
                    await producer.stop()
                    raise KafkaConnectionError(f"cannot start the producer: {exc}") from exc
                self._producer = producer
            return self._producer

    def _parent(self, traceparent: str | None) -> otel_context.Context | None:
        """The trace context of ``traceparent``: the events of one request share it, so
        it is parsed once and remembered for a while."""
        if not traceparent:
            return None
        parent = self._parents.get(traceparent)
        if parent is None:
            if len(self._parents) >= 1024:
                self._parents.clear()
            parent = self._parents[traceparent] = _PROPAGATOR.extract({"traceparent": traceparent})
        return parent

    async def send(
        self, topic: str, value: bytes, *, key: str, headers: Mapping[str, str]
    ) -> RecordMetadata:
        """Send one record and wait for the broker's ack. ``headers["ce_traceparent"]``,
        when present, is the trace the record joins."""
        producer = await self._started()
        span = self._tracer.start_span(
            f"{topic} publish",
            context=self._parent(headers.get("ce_traceparent")),
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        record_headers = [(k, v.encode()) for k, v in {**headers, **carrier}.items()]
        try:
            sent = await producer.send(topic, value, key=key.encode(), headers=record_headers)
            metadata: RecordMetadata = await sent
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR)
            raise
        finally:
            span.end()
        return metadata

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # closing anyway
                logger.info("relay producer stop: %s", type(exc).__name__)
