"""CloudEvents 1.0 in Kafka *binary* content mode.

The event's attributes travel as ``ce_*`` headers and the JSON body is the typed
payload itself (no envelope inside the body). ``ce_id`` is the idempotency key
downstream. Spec: https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "org.commonground"

ATTRIBUTE_HEADERS = (
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_specversion",
    "ce_subject",
    "ce_traceparent",
)


def current_traceparent() -> str | None:
    """W3C traceparent of the active span, if any (CloudEvents distributed-tracing
    extension). Captured when an event is created, so an event published later (by an
    outbox relay) still continues the trace of the request that caused it."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class Event(BaseModel):
    """Base of every published event: past tense, frozen, versioned.

    ``event_name`` is the past-tense name (``EnrolmentAccepted``); ``event_version``
    is bumped only for a breaking change, which also needs a new type string so old
    and new consumers can coexist.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_name: ClassVar[str]
    event_version: ClassVar[int] = 1

    @classmethod
    def ce_type(cls) -> str:
        return f"{TYPE_PREFIX}.{cls.event_name}.v{cls.event_version}"


E = TypeVar("E", bound=Event)


def describe_errors(exc: ValidationError, limit: int = 10) -> str:
    """Field paths and messages of a validation error, never the input values
    (they may be special category or identifying data)."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class EnvelopeError(ValueError):
    """A record is not a valid CloudEvent of a known type (poison: never retried)."""


@dataclass(frozen=True)
class CloudEvent(Generic[E]):
    data: E
    source: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    traceparent: str | None = field(default_factory=current_traceparent)

    @property
    def type(self) -> str:
        return self.data.ce_type()

    def headers(self) -> dict[str, str]:
        headers = {
            "ce_specversion": SPEC_VERSION,
            "ce_id": self.id,
            "ce_type": self.type,
            "ce_source": self.source,
            "ce_time": self.time.isoformat(),
            "content-type": CONTENT_TYPE,
        }
        if self.subject is not None:
            headers["ce_subject"] = self.subject
        if self.traceparent is not None:
            headers["ce_traceparent"] = self.traceparent
        return headers

    def body(self) -> bytes:
        return self.data.model_dump_json().encode()


def _header_text(name: str, value: Any) -> str:
    """A header value as text. CloudEvent attributes must be UTF-8 (else the record is
    poison); other headers are decoded leniently so that one binary header (a tracing
    or vendor header) does not make an otherwise valid event unreadable."""
    if value is None:
        return ""
    if not isinstance(value, bytes):
        return str(value)
    if name.startswith("ce_") or name == "content-type":
        try:
            return value.decode("utf-8", "strict")
        except UnicodeDecodeError:
            raise EnvelopeError(f"header {name} is not UTF-8") from None
    return value.decode("utf-8", "replace")


class EventRegistry:
    """Maps ``ce_type`` strings to event models, and decodes records into CloudEvents."""

    def __init__(self, *models: type[Event]) -> None:
        self._by_type: dict[str, type[Event]] = {m.ce_type(): m for m in models}

    def __contains__(self, ce_type: str) -> bool:
        return ce_type in self._by_type

    @property
    def models(self) -> tuple[type[Event], ...]:
        return tuple(self._by_type.values())

    def decode(self, body: bytes, headers: Mapping[str, Any]) -> CloudEvent[Event]:
        """Decode one Kafka record. Raises :class:`EnvelopeError` for anything unusable."""
        h = {k: _header_text(k, v) for k, v in headers.items()}
        missing = [a for a in ("ce_id", "ce_type", "ce_source", "ce_specversion") if not h.get(a)]
        if missing:
            raise EnvelopeError(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
        if h["ce_specversion"] != SPEC_VERSION:
            raise EnvelopeError(f"unsupported ce_specversion {h['ce_specversion']!r}")
        model = self._by_type.get(h["ce_type"])
        if model is None:
            raise EnvelopeError(f"unknown event type/version {h['ce_type']!r}")
        try:
            data = model.model_validate_json(body)
        except ValidationError as exc:
            raise EnvelopeError(
                f"{h['ce_type']} body does not match its schema: {describe_errors(exc)}"
            ) from None  # the chained error would carry input values (personal data)
        try:
            time = datetime.fromisoformat(h["ce_time"]) if h.get("ce_time") else datetime.now(UTC)
        except ValueError as exc:
            raise EnvelopeError(f"ce_time is not RFC 3339: {h['ce_time']!r}") from exc
        return CloudEvent(
            data=data,
            source=h["ce_source"],
            id=h["ce_id"],
            time=time,
            subject=h.get("ce_subject"),
            traceparent=h.get("ce_traceparent") or h.get("traceparent"),
        )
