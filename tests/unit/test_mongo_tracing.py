"""MongoDB command spans (``shared.mongo.MongoCommandTracer``), driven with PyMongo's own
command-monitoring events, no server.

Why not ``opentelemetry-instrumentation-pymongo`` (issue 14): PyMongo's async client does
publish these events (``pymongo/asynchronous/command_runner.py``), but that library

* registers one listener for the whole process (``monitoring.register``) on the first
  tracer provider it is given, so the second and third service in one process (the
  integration tests run all three) would report their commands as the first's;
* makes a root span of every command outside a trace (outbox polling, lag and log
  probes, readiness pings: a trace per poll);
* names spans ``<database>.<command>`` (the dashboards' and tests' ``mongodb.<command>``);
* pins ``opentelemetry-semantic-conventions`` to its own beta: its newest release (0.66b1)
  cannot be installed with the locked SDK 1.45.2 (which pins 0.66b2).

The tests below are the behaviour a replacement has to keep.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pymongo import monitoring

from shared.mongo import MongoCommandTracer, make_mongo_client
from shared.settings import ServiceSettings

ADDRESS = ("db", 27017)
_request_ids = iter(range(1, 1_000_000))


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.listener = MongoCommandTracer(self.provider)

    def run(self, command: dict[str, Any], *, fail: bool = False) -> None:
        """One command's events, as PyMongo publishes them around a round trip."""
        request_id = next(_request_ids)
        started = monitoring.CommandStartedEvent(command, "cg_db", request_id, ADDRESS, 7)
        self.listener.started(started)
        name = started.command_name
        took = datetime.timedelta(milliseconds=1)
        if fail:
            failure = {"ok": 0, "errmsg": "E11000 duplicate key: {learner_ref: 'L123'}"}
            self.listener.failed(
                monitoring.CommandFailedEvent(took, failure, name, request_id, ADDRESS, 7)
            )
        else:
            self.listener.succeeded(
                monitoring.CommandSucceededEvent(took, {"ok": 1}, name, request_id, ADDRESS, 7)
            )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def traced() -> Traced:
    return Traced()


def test_a_command_in_a_trace_is_a_client_span_without_documents(traced: Traced) -> None:
    tracer = traced.provider.get_tracer("test")
    with tracer.start_as_current_span("handle") as parent:
        traced.run({"insert": "enrolments", "documents": [{"learner_ref": "L123"}]})
    [span] = [s for s in traced.spans() if s.kind is SpanKind.CLIENT]
    assert span.name == "mongodb.insert"
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "db.system": "mongodb",
        "db.name": "cg_db",
        "db.operation": "insert",
        "db.mongodb.collection": "enrolments",
    }


def test_a_failed_command_names_the_failure_type_only(traced: Traced) -> None:
    with traced.provider.get_tracer("test").start_as_current_span("handle"):
        traced.run({"insert": "enrolments"}, fail=True)
    [span] = [s for s in traced.spans() if s.kind is SpanKind.CLIENT]
    assert span.status.status_code is StatusCode.ERROR
    assert "L123" not in str(span.status.description)  # server messages quote documents


def test_commands_outside_a_trace_and_handshakes_make_no_spans(traced: Traced) -> None:
    traced.run({"find": "outbox"})  # background polling: not a trace of its own
    traced.run({"ping": 1})
    with traced.provider.get_tracer("test").start_as_current_span("handle"):
        traced.run({"ping": 1})
        traced.run({"hello": 1})
    assert [s.name for s in traced.spans()] == ["handle"]


async def test_each_client_reports_to_its_own_services_provider() -> None:
    """Listeners are per client (``event_listeners``), never registered process-wide."""
    first, second = Traced(), Traced()
    client = make_mongo_client(
        ServiceSettings(service_name="enrolment", mongodb_url="mongodb://db:27017"),
        tracer_provider=first.provider,
    )
    listeners = client.options.event_listeners
    await client.close()  # never connected: construction does not
    assert len(listeners) == 1 and isinstance(listeners[0], MongoCommandTracer)
    assert monitoring._LISTENERS.command_listeners == []  # nothing process-wide
    with second.provider.get_tracer("test").start_as_current_span("handle"):
        second.run({"update": "matches"})
    assert [s.name for s in first.spans()] == []
    assert [s.name for s in second.spans()] == ["mongodb.update", "handle"]
