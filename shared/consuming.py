"""Turning consumed Kafka records into typed CloudEvents, with poison going to the DLQ."""

from __future__ import annotations

from faststream.kafka.message import KafkaMessage

from shared.cloudevents import CloudEvent, EnvelopeError, Event, EventRegistry
from shared.dead_letters import DeadLetterPublisher


async def decode_or_dead_letter(
    message: KafkaMessage, registry: EventRegistry, dead_letters: DeadLetterPublisher
) -> CloudEvent[Event] | None:
    """The record as a CloudEvent, or ``None`` after dead-lettering it as poison.

    Poison is never retried: an unparseable body, a schema-invalid payload or an
    unknown type/version cannot succeed on redelivery.
    """
    record = message.raw_message
    try:
        return registry.decode(record.value or b"", dict(record.headers or ()))
    except EnvelopeError as exc:
        await dead_letters.send(record, exc, kind="poison")
        return None
