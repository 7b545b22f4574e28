"""Telemetry wiring used by every service: JSON logs with trace ids, Prometheus metrics,
OpenTelemetry tracing (FastStream's Kafka middlewares carry context in headers), and the
ops endpoints ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)
_TRACE_CONTEXT = TraceContextTextMapPropagator()

ReadinessCheck = Callable[[], Awaitable[bool]]
M = TypeVar("M")


class _TraceContextFilter(logging.Filter):
    """Adds the current trace and span ids to every record (empty when no span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else ""
        return True


def configure_logging(settings: ServiceSettings) -> None:
    """Root logging: one JSON object per line on stderr, with service and trace ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceContextFilter())
    if settings.log_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": settings.service_name},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(trace_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn's access log would repeat every path (which may hold ids); our HTTP
    # metrics cover traffic instead.
    logging.getLogger("uvicorn.access").disabled = True
    # PyMongo's command log prints whole documents (personal data) at DEBUG: never on.
    for name in ("pymongo.command", "pymongo.serverSelection", "pymongo.connection"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # aiokafka logs every manual assignment change at INFO; the log probes assign and
    # release partitions before each batch (shared.positions). Group rebalances are still
    # logged by aiokafka.consumer.group_coordinator.
    for name in ("aiokafka.consumer.subscription_state", "aiokafka.consumer.consumer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@dataclass
class Telemetry:
    """Per-process telemetry objects. A fresh registry per app keeps tests independent."""

    service_name: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    tracer_provider: TracerProvider = field(default_factory=TracerProvider)
    _metrics: dict[str, Any] = field(default_factory=dict, repr=False)

    def kafka_middlewares(self) -> tuple[Any, ...]:
        return (
            KafkaTelemetryMiddleware(tracer_provider=self.tracer_provider),
            KafkaPrometheusMiddleware(
                registry=self.registry, app_name=self.service_name, metrics_prefix="faststream"
            ),
        )

    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer(f"commonground.{self.service_name}")

    # Metrics are created once per registry and shared after that, so components built
    # anew in each lifespan (tests restart apps) get the same metric object.
    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._metric(name, lambda: Counter(name, doc, labels, registry=self.registry))

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._metric(name, lambda: Gauge(name, doc, labels, registry=self.registry))

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = ()
    ) -> Histogram:
        kwargs: dict[str, Any] = {"registry": self.registry}
        if buckets:
            kwargs["buckets"] = buckets
        return self._metric(name, lambda: Histogram(name, doc, labels, **kwargs))

    def _metric(self, name: str, factory: Callable[[], M]) -> M:
        if name not in self._metrics:
            self._metrics[name] = factory()
        metric: M = self._metrics[name]
        return metric


def build_telemetry(
    settings: ServiceSettings, *, span_processors: tuple[SpanProcessor, ...] = ()
) -> Telemetry:
    """Tracing exports over OTLP/HTTP only when enabled; off by default, and then no
    exporter is built, so no error appears when no collector is present."""
    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.namespace": settings.otel_service_namespace,
        }
    )
    provider = TracerProvider(resource=resource)
    if settings.otel_enabled:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint
        exporter = (
            OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
            if endpoint
            else OTLPSpanExporter()
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in span_processors:
        provider.add_span_processor(processor)
    return Telemetry(service_name=settings.service_name, tracer_provider=provider)


class HttpMetricsMiddleware:
    """Counts requests and observes latency by route *template*, method and status.

    Labels use the matched route path (``/v1/enrolments/{enrolment_id}``), never the
    raw URL, so no identifier becomes a label and cardinality stays bounded.

    Not prometheus-fastapi-instrumentator: it re-matches the routes itself and, for a
    request redirected over a trailing slash (``/v1/enrolments/<id>/``), labels it with
    the raw path, an id included (tests/unit/test_http_telemetry.py). Starlette's own
    match (``scope["route"]``) is the template or nothing.
    """

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.requests = telemetry.counter(
            "http_requests_total", "HTTP requests handled.", ("route", "method", "status")
        )
        self.latency = telemetry.histogram(
            "http_request_duration_seconds",
            "HTTP request latency.",
            ("route", "method"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.requests.labels(template, method, str(status)).inc()
            self.latency.labels(template, method).observe(time.perf_counter() - start)


# Who sent a request is personal data (behind a trusted proxy the client address is the
# end user's: shared.http_server). OpenTelemetry's HTTP instrumentation records it on
# every server span, and the tracing API cannot remove an attribute, so the values are
# overwritten as the span starts, before anything can export it.
_CLIENT_ATTRIBUTES = (
    "net.peer.ip",
    "client.address",
    "http.client_ip",
    "http.user_agent",
    "user_agent.original",
)


def _redact_client(span: trace.Span, scope: Mapping[str, Any]) -> None:
    recorded = getattr(span, "attributes", None) or {}
    span.set_attributes({k: "redacted" for k in _CLIENT_ATTRIBUTES if k in recorded})


# The ops endpoints are not traced (probes and scrapes would swamp the traces). The
# instrumentation searches these regexes in ``scheme://host/path`` (no query string).
_UNTRACED_URLS = ",".join(rf"^\w+://[^/]+{path}$" for path in ("/healthz", "/readyz", "/metrics"))


def ops_router(
    telemetry: Telemetry,
    readiness_checks: Callable[[], Mapping[str, ReadinessCheck]],
    *,
    timeout_s: float = 2.0,
) -> APIRouter:
    """``/healthz`` (process up), ``/readyz`` (dependencies reachable), ``/metrics``.

    ``readiness_checks`` is called per request so the lifespan can install checks for
    clients it builds later (and remove them on shutdown, making readiness go false
    first). Responses carry no data beyond component names and booleans.
    """
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: broker and database reachable")
    async def readyz() -> JSONResponse:
        checks = dict(readiness_checks())
        results: dict[str, bool] = {}

        async def run(name: str, check: ReadinessCheck) -> None:
            try:
                results[name] = bool(await asyncio.wait_for(check(), timeout_s))
            except Exception as exc:  # a failed probe is an answer, not an error
                logger.info("readiness check %s failed: %s", name, type(exc).__name__)
                results[name] = False

        await asyncio.gather(*(run(n, c) for n, c in checks.items()))
        ready = bool(checks) and all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def instrument_app(app: FastAPI, telemetry: Telemetry) -> None:
    """HTTP metrics, and a SERVER span per request (OpenTelemetry's FastAPI
    instrumentation: it continues a caller's ``traceparent``, names the span by route
    template and marks 5xx as errors). Events created while handling a request capture
    its context (``shared.cloudevents.current_traceparent``)."""
    app.add_middleware(HttpMetricsMiddleware, telemetry=telemetry)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        # Its HTTP metrics would go to the global meter provider: ours are Prometheus.
        meter_provider=NoOpMeterProvider(),
        excluded_urls=_UNTRACED_URLS,
        server_request_hook=_redact_client,
        # One span per request, not one per ASGI message too.
        exclude_spans=["receive", "send"],
    )


def record_trace(headers: Sequence[tuple[str, bytes]] | None) -> otel_context.Context | None:
    """The trace a consumed record belongs to (its ``traceparent``, else the event's
    ``ce_traceparent``), or None when it carries neither."""
    carrier = {k: bytes(v).decode("latin-1") for k, v in headers or () if v is not None}
    parent = carrier.get("traceparent") or carrier.get("ce_traceparent")
    if parent is None:
        return None
    return _TRACE_CONTEXT.extract({"traceparent": parent})


@contextmanager
def record_span(tracer: trace.Tracer, record: Any, operation: str) -> Iterator[trace.Span]:
    """A consumer span for one record of a batch, current for the block, in the trace of
    the request that caused the record and linked to the batch's span.

    FastStream gives a batch one span that only *links* to its records' traces; this
    puts each record's handling (and the MongoDB writes it makes) into its own trace."""
    batch = trace.get_current_span().get_span_context()
    with tracer.start_as_current_span(
        f"{record.topic} {operation}",
        context=record_trace(record.headers),
        kind=trace.SpanKind.CONSUMER,
        links=[trace.Link(batch)] if batch.is_valid else [],
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.kafka.destination.partition": record.partition,
            "messaging.kafka.message.offset": record.offset,
        },
    ) as span:
        yield span
