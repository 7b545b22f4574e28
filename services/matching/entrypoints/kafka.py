"""Matching's Kafka edge: the enrolment-events subscriber. It keeps the log fence and
the consume policy; what each record means is the use case's
(:meth:`MatchingService.on_enrolment_event`)."""

from __future__ import annotations

import functools
import logging

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.matching.domain import InvalidParticipant
from services.matching.entrypoints.dependencies import MatchingContext, context_of
from services.matching.settings import MatchingSettings
from services.matching.use_cases import PRIVACY_EVENTS
from shared import topics
from shared.consuming import (
    Record,
    consume_policy,
    dead_letter_to,
    decode_or_dead_letter,
    exclude_from_commit,
    raw_body_decoder,
    tolerant_batch_parser,
)
from shared.contracts.registry import registry_for
from shared.dead_letters import RetryPolicy, retrying
from shared.mongo import mongo_ping
from shared.positions import (
    MongoPositions,
    Position,
    TopicPartition,
    advanced_positions,
    ce_id_of,
    first_offsets,
    rewind,
)
from shared.service import Runtime
from shared.telemetry import record_span

logger = logging.getLogger(__name__)

ENROLMENT_EVENTS = registry_for(topics.ENROLMENT_EVENTS)


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    """The enrolment-events subscriber: fence the batch, handle each record, store how
    far each partition got."""
    router = KafkaRouter()
    settings = runtime.settings
    if not isinstance(settings, MatchingSettings):
        raise TypeError("the matching service needs MatchingSettings")
    retry_policy = RetryPolicy()

    # Batches, so that the log fence checks each partition's position once per batch
    # (a topic re-created under a running consumer is only visible that way:
    # shared.positions.LogFence); the records are still handled one at a time, in order.
    # NACK_ON_ERROR: commit exactly the batch's offsets (shared.consuming) only after the
    # handler returns; an exception seeks back so the batch is redelivered
    # (at-least-once; opt-ins are de-duplicated by event id, the other effects are
    # idempotent). Poison is dead-lettered and acked. Transient failures are retried
    # with backoff; if the database is down the batch is rewound and retried until it is
    # back, if it answers the record is dead-lettered (exhausted). docs/delivery.md.
    @router.subscriber(
        topics.ENROLMENT_EVENTS,
        group_id=settings.group_id,
        auto_offset_reset=settings.consumer_offset_reset,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser,
        decoder=raw_body_decoder,
    )
    async def on_enrolment_events(message: KafkaMessage) -> None:
        raw = message.raw_message
        records: tuple[Record, ...] = raw if isinstance(raw, tuple) else (raw,)
        ctx = context_of(runtime)
        records, stored = await fence_batch(message, records, ctx, retry_policy)
        await handle_each(runtime, records)
        if ctx.positions is not None and records:
            await save_positions(ctx.positions, records, stored, retry_policy)

    return [router]


async def fence_batch(
    message: KafkaMessage,
    records: tuple[Record, ...],
    ctx: MatchingContext,
    retry_policy: RetryPolicy,
) -> tuple[tuple[Record, ...], dict[TopicPartition, Position]]:
    """The batch's records still to handle, and their partitions' stored positions.

    A partition whose log was replaced is sought back to its start and left out of the
    batch's commit, and its records dropped: they come again from the new log. Without
    positions and a fence, every record, and no positions."""
    positions, fence = ctx.positions, ctx.fence
    if positions is None or fence is None:
        return records, {}
    first = first_offsets(records)
    stored = await retrying(lambda: positions.load(first), retry_policy)
    replaced = await fence.replaced(first, stored)
    if replaced:
        # Another log: read it again from its start.
        exclude_from_commit(message, replaced)
        sought = await rewind(message.consumer, replaced)
        if sought:
            await retrying(
                lambda: positions.save({tp: Position(-1) for tp in sought}),
                retry_policy,
            )
        records = tuple(r for r in records if (r.topic, r.partition) not in replaced)
    return records, stored


async def handle_each(runtime: Runtime, records: tuple[Record, ...]) -> None:
    """Each record in order, under the consume policy."""
    tracer = runtime.telemetry.tracer()
    for record in records:
        # Each record's handling (and its MongoDB writes) in the trace of the request
        # that caused it: the batch's own span only links to them.
        with record_span(tracer, record, "process"):
            await consume_policy(
                [record],
                functools.partial(handle_enrolment_event, runtime, record),
                None,  # one record: after the retries, an outage waits, else dead-letter
                healthy=lambda: mongo_ping(runtime.mongo),
                failed=dead_letter_to(runtime.dead_letters),
                what="enrolment event",
            )


async def handle_enrolment_event(runtime: Runtime, record: Record) -> None:
    """One record: decoded (else dead-lettered), and if it is an event matching acts on,
    to the use case; an opt-in it can never process is dead-lettered as poison."""
    event = await decode_or_dead_letter(record, ENROLMENT_EVENTS, runtime.dead_letters)
    if event is None or not isinstance(event.data, PRIVACY_EVENTS):
        return
    try:
        await context_of(runtime).service.on_enrolment_event(event.id, event.data)
    except InvalidParticipant as exc:
        await runtime.dead_letters.send(record, exc, kind="poison")


async def save_positions(
    positions: MongoPositions,
    records: tuple[Record, ...],
    stored: dict[TopicPartition, Position],
    retry_policy: RetryPolicy,
) -> None:
    """How far each partition of the batch was handled (what the fence checks next)."""
    handled = advanced_positions(
        (((r.topic, r.partition), r.offset, ce_id_of(r.headers)) for r in records),
        stored,
        set(),
    )
    await retrying(lambda: positions.save(handled), retry_policy)
