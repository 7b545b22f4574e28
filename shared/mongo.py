"""MongoDB client construction (PyMongo's async API). Created in a lifespan, never at import.

Every command becomes a CLIENT span (``mongodb.<command>``) under the current trace, via
PyMongo's command monitoring, so a trace shows the database writes a message caused.
Spans carry the command name, database and collection only, never documents.
Not opentelemetry-instrumentation-pymongo: it listens process-wide on one tracer provider
and makes a root span of every background command (tests/unit/test_mongo_tracing.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.settings import ServiceSettings

T = TypeVar("T")

_SKIPPED_COMMANDS = frozenset(
    {"hello", "ismaster", "isMaster", "ping", "saslStart", "saslContinue", "endSessions"}
)


class MongoCommandTracer(monitoring.CommandListener):
    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer("commonground.mongodb")
        self._spans: dict[tuple[int, int], Span] = {}

    def _key(self, event: Any) -> tuple[int, int]:
        return (event.request_id, event.operation_id or 0)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in _SKIPPED_COMMANDS:
            return
        if not trace.get_current_span().get_span_context().is_valid:
            return  # background housekeeping outside any trace: not worth a root span
        collection = event.command.get(event.command_name)
        attributes = {
            "db.system": "mongodb",
            "db.name": event.database_name,
            "db.operation": event.command_name,
        }
        if isinstance(collection, str):
            attributes["db.mongodb.collection"] = collection
        self._spans[self._key(event)] = self._tracer.start_span(
            f"mongodb.{event.command_name}", kind=SpanKind.CLIENT, attributes=attributes
        )
        if len(self._spans) > 10_000:  # never grow without bound on lost replies
            self._spans.clear()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        span = self._spans.pop(self._key(event), None)
        if span is not None:
            span.end()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        span = self._spans.pop(self._key(event), None)
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, type(event.failure).__name__))
            span.end()


def make_mongo_client(
    settings: ServiceSettings,
    *,
    tracer_provider: TracerProvider | None = None,
    **overrides: Any,
) -> AsyncMongoClient[Any]:
    options: dict[str, Any] = {
        "appname": settings.service_name,
        "serverSelectionTimeoutMS": 5000,
        "tz_aware": True,
    }
    if tracer_provider is not None:
        options["event_listeners"] = [MongoCommandTracer(tracer_provider)]
    options.update(overrides)
    return AsyncMongoClient(settings.mongodb_url.get_secret_value(), **options)


async def mongo_ping(client: AsyncMongoClient[Any]) -> bool:
    await client.admin.command("ping")
    return True


# A ``$in`` filter costs the embedded server (SecantusDB) one comparison per listed value
# for every document it returns: 1,000 ids that all exist cost a million Python
# comparisons (about a second; bench/RESULTS.md, issue 18). Lists longer than this are
# looked up in slices: a few more round trips, a fraction of the work.
IN_CHUNK = 64


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> list[list[T]]:
    """``values`` (de-duplicated, in order) cut into ``$in`` lists of at most ``size``."""
    unique = list(dict.fromkeys(values))
    return [unique[k : k + size] for k in range(0, len(unique), size)]


DUPLICATE_KEY = 11000


def is_duplicate_key(exc: BaseException) -> bool:
    """A write refused because a document with its unique key exists (alone, or among
    the write errors of a bulk write)."""
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == DUPLICATE_KEY for e in exc.details.get("writeErrors", []))
    return False
