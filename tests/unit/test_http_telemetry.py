"""HTTP telemetry of every service (``shared.telemetry.instrument_app``), in process:
one SERVER span per request from OpenTelemetry's FastAPI instrumentation, on the app's
own tracer provider, and the HTTP metrics that alerts and dashboards are built on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest

from shared.telemetry import Telemetry, instrument_app, ops_router

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@dataclass
class Instrumented:
    client: httpx.AsyncClient
    telemetry: Telemetry
    exporter: InMemorySpanExporter
    handler_spans: list[trace.SpanContext]

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> str:
        return generate_latest(self.telemetry.registry).decode()


@pytest.fixture
async def app() -> AsyncIterator[Instrumented]:
    telemetry = Telemetry("svc")
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()
    # Included with a prefix, as the services' routers are.
    api = APIRouter(prefix="/v1")
    handler_spans: list[trace.SpanContext] = []

    @api.post("/things/{thing_id}", status_code=201)
    async def make(thing_id: str) -> dict[str, str]:
        handler_spans.append(trace.get_current_span().get_span_context())
        return {"id": thing_id}

    @api.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(503)

    @api.get("/crash")
    async def crash() -> None:
        raise RuntimeError("bug")

    app.include_router(api)
    app.include_router(ops_router(telemetry, lambda: {}))
    instrument_app(app, telemetry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Instrumented(client, telemetry, exporter, handler_spans)


async def test_a_request_is_one_server_span_named_by_route_continuing_the_callers_trace(
    app: Instrumented,
) -> None:
    response = await app.client.post(
        "/v1/things/t-123?x=1", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert response.status_code == 201
    [span] = app.spans()  # no per-message ("http send"/"http receive") spans
    assert span.name == "POST /v1/things/{thing_id}"  # the template: raw paths hold ids
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v1/things/{thing_id}"
    assert span.attributes["http.status_code"] == 201
    # Who sent it is personal data: never recorded (the transport's client is 127.0.0.1).
    recorded = str(dict(span.attributes))
    assert "127.0.0.1" not in recorded and "python-httpx" not in recorded, recorded
    # Events created by the handler capture this span (shared.cloudevents).
    assert app.handler_spans == [span.context]
    # On the app's own provider (build_telemetry's resource), not the global one.
    assert span.resource is app.telemetry.tracer_provider.resource


async def test_server_errors_mark_the_span_as_failed(app: Instrumented) -> None:
    assert (await app.client.get("/v1/unavailable")).status_code == 503
    assert (await app.client.get("/v1/crash")).status_code == 500
    statuses = {s.name: s.status.status_code for s in app.spans()}
    assert statuses == {"GET /v1/unavailable": StatusCode.ERROR, "GET /v1/crash": StatusCode.ERROR}


async def test_ops_endpoints_are_not_traced_but_are_counted(app: Instrumented) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/metrics?format=x"):
        await app.client.get(path)
    assert app.spans() == []
    await app.client.get("/v1/elsewhere/metrics")  # only the ops paths themselves
    assert [s.name for s in app.spans()] == ["GET"]
    metrics = app.metrics()
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="GET",route="/readyz",status="503"} 1.0' in metrics


async def test_http_metrics_keep_their_names_and_labels(app: Instrumented) -> None:
    """deploy/metrics.yml, the alert rules and the dashboards rely on these series."""
    await app.client.post("/v1/things/t-1")
    await app.client.post("/v1/things/t-2")
    await app.client.get("/v1/crash")
    await app.client.get("/v1/no/such/route")
    # Redirected to the same path without its trailing slash: still no route matched.
    # (prometheus-fastapi-instrumentator labels this request with its raw path, an id
    # included, which is why shared.telemetry keeps its own metrics middleware.)
    await app.client.post("/v1/things/t-3/")
    metrics = app.metrics()
    for series in (
        'http_requests_total{method="POST",route="/v1/things/{thing_id}",status="201"} 2.0',
        'http_requests_total{method="GET",route="/v1/crash",status="500"} 1.0',
        'http_requests_total{method="GET",route="unmatched",status="404"} 1.0',
        'http_requests_total{method="POST",route="unmatched",status="307"} 1.0',
        'http_request_duration_seconds_count{method="POST",route="/v1/things/{thing_id}"} 2.0',
        'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/crash"}',
        'http_request_duration_seconds_bucket{le="10.0",method="GET",route="/v1/crash"}',
    ):
        assert series in metrics, series
    for raw in ("t-1", "t-3", "/v1/no/such"):
        assert raw not in metrics, raw  # no raw path is a label
