"""Enrolment's Kafka subscriber: inbound submission records → the intake use case, under
the platform's consume policy (:func:`shared.consuming.consume_policy`)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.enrolment.domain import FieldError
from services.enrolment.entrypoints.dependencies import STATE_KEY, EnrolmentContext
from services.enrolment.inbound_auth import Verified
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases.intake import EnrolmentService, InboundItem
from shared import topics
from shared.consuming import (
    Probe,
    consume_policy,
    dead_letter_to,
    raw_body_decoder,
    tolerant_batch_parser,
)
from shared.contracts.enrolment import EnrolmentSubmission, InboundCoordinates
from shared.dead_letters import PoisonMessage, RetryPolicy, retrying
from shared.mongo import mongo_ping
from shared.service import Runtime

logger = logging.getLogger(__name__)

# A refusal (SubmissionRejected) echoes the record's key and ce_id, so a record whose
# key or ce_id is longer than this is dead-lettered instead: a UKPRN is 8 digits, and a
# refusal built from a 700 KB key would be too large to publish (docs/delivery.md).
MAX_INBOUND_KEY_BYTES = 256
MAX_INBOUND_CE_ID_BYTES = 256


def decode_inbound(
    record: ConsumerRecord[Any, Any], *, max_value_bytes: int | None = None
) -> InboundItem:
    """One inbound record → an item to check, or PoisonMessage for bytes no check can use.

    Body: the submission as JSON (the same document as the HTTP body), at most
    ``max_value_bytes`` (the HTTP limit for one submission). Key: the provider's UKPRN.
    CloudEvent headers are optional; if ``ce_type`` is present it must be the submission
    type. Oversized bodies, keys and ``ce_id`` headers are poison (dead-lettered, with
    digests if too large to keep), never echoed in a refusal.
    """
    value_size = len(record.value or b"")
    if max_value_bytes is not None and value_size > max_value_bytes:
        raise PoisonMessage(
            f"record too large: {value_size} bytes (a submission is at most {max_value_bytes})"
        )
    if record.key is not None and len(record.key) > MAX_INBOUND_KEY_BYTES:
        raise PoisonMessage(
            f"record key too large: {len(record.key)} bytes "
            f"(expected a provider UKPRN, at most {MAX_INBOUND_KEY_BYTES})"
        )
    for name, raw_value in record.headers or ():
        if name == "ce_id" and raw_value is not None and len(raw_value) > MAX_INBOUND_CE_ID_BYTES:
            raise PoisonMessage(
                f"ce_id header too large: {len(raw_value)} bytes "
                f"(at most {MAX_INBOUND_CE_ID_BYTES})"
            )
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    ce_type = headers.get("ce_type")
    if ce_type and ce_type != EnrolmentSubmission.ce_type():
        raise PoisonMessage(
            f"unexpected ce_type on {topics.ENROLMENT_INBOUND}; "
            f"expected {EnrolmentSubmission.ce_type()}"
        )
    if not record.value:
        raise PoisonMessage("empty record: expected a JSON submission")
    try:
        payload = json.loads(record.value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nested deeper than the parser allows (a hostile document).
        raise PoisonMessage(f"body is not JSON ({type(exc).__name__})") from None
    provider_ref = None
    if record.key:
        try:
            provider_ref = record.key.decode().strip() or None
        except UnicodeDecodeError:
            provider_ref = None
    return InboundItem(
        coordinates=InboundCoordinates(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            ce_id=headers.get("ce_id"),
        ),
        provider_ref=provider_ref,
        payload=payload,
    )


def refused_inbound(record: ConsumerRecord[Any, Any], refusal: FieldError) -> InboundItem:
    """An unauthenticated record: identified by its coordinates and claimed key only."""
    try:
        claimed = (record.key or b"").decode().strip()[:64] or None
    except UnicodeDecodeError:
        claimed = None
    return InboundItem(
        coordinates=InboundCoordinates(
            topic=record.topic, partition=record.partition, offset=record.offset
        ),
        provider_ref=claimed,
        payload=None,
        refusal=refusal,
    )


def decode_batch(
    records: Sequence[ConsumerRecord[Any, Any]],
    outcomes: Sequence[Verified | FieldError] | None,
    max_value_bytes: int,
) -> tuple[
    list[tuple[ConsumerRecord[Any, Any], InboundItem]],
    list[tuple[ConsumerRecord[Any, Any], BaseException]],
]:
    """(items to check, poison) of a batch: a record whose sender was not authenticated
    (``outcomes``: one per record, from :class:`InboundAuthenticator`) is refused with
    its body unread; the others are decoded."""
    decoded: list[tuple[ConsumerRecord[Any, Any], InboundItem]] = []
    poison: list[tuple[ConsumerRecord[Any, Any], BaseException]] = []
    for index, record in enumerate(records):
        outcome = outcomes[index] if outcomes is not None else None
        if isinstance(outcome, FieldError):
            decoded.append((record, refused_inbound(record, outcome)))
            continue
        try:
            decoded.append((record, decode_inbound(record, max_value_bytes=max_value_bytes)))
        except PoisonMessage as exc:
            poison.append((record, exc))
    return decoded, poison


INTAKE_RETRY = RetryPolicy(attempts=5, initial_delay_s=0.2, max_delay_s=5.0)


async def store_inbound(
    service: EnrolmentService,
    decoded: Sequence[tuple[ConsumerRecord[Any, Any], InboundItem]],
    healthy: Probe | None = None,
) -> list[tuple[ConsumerRecord[Any, Any], BaseException]]:
    """Store a batch in one transaction. Transient failures are retried; if they persist
    while the database is down, :class:`DependencyUnavailable` is raised (the batch is
    redelivered once it is back). Anything else, or transient failures while the
    database answers, means some record trips an error: the records then go one by one,
    and only the ones that fail are returned to be dead-lettered (``RetriesExhausted``
    for transient ones), so one bad record never sinks the good ones. Without a
    ``healthy`` probe, transient failures are always treated as an outage."""
    failed: list[tuple[ConsumerRecord[Any, Any], BaseException]] = []

    async def note(pair: tuple[ConsumerRecord[Any, Any], InboundItem], e: BaseException) -> None:
        failed.append((pair[0], e))

    await consume_policy(
        decoded,
        lambda: retrying(lambda: service.submit_inbound([i for _, i in decoded]), INTAKE_RETRY),
        lambda pair: retrying(functools.partial(service.submit_inbound, [pair[1]]), INTAKE_RETRY),
        healthy=healthy,
        failed=note,
        what="intake batch",
        poison=lambda exc: PoisonMessage(f"intake failed: {type(exc).__name__}"),
    )
    return failed


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    settings = runtime.settings
    assert isinstance(settings, EnrolmentSettings)
    kafka = KafkaRouter()

    # One transaction per batch of records. NACK_ON_ERROR: offsets are committed only
    # after the batch is stored (exactly the batch's offsets: shared.consuming); an
    # exception (the database down through the retries) rewinds every partition of the
    # batch, and redelivery is idempotent (enrolment ids and rejection ids are
    # deterministic). See docs/delivery.md.
    @kafka.subscriber(
        topics.ENROLMENT_INBOUND,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=settings.inbound_max_records,
        batch_timeout_ms=settings.inbound_batch_timeout_ms,
        parser=tolerant_batch_parser,
        decoder=raw_body_decoder,
    )
    async def on_submissions(message: KafkaMessage) -> None:
        ctx: EnrolmentContext = runtime.state[STATE_KEY]
        raw = message.raw_message
        records: Sequence[ConsumerRecord[Any, Any]] = raw if isinstance(raw, tuple) else (raw,)
        # Who sent each record is established first (signature headers); a record that
        # fails is refused as unauthenticated without its body ever being parsed.
        outcomes = await ctx.inbound_auth.verify(records) if ctx.inbound_auth else None
        decoded, poison = decode_batch(records, outcomes, settings.max_item_body_bytes)
        if decoded:
            poison += await store_inbound(ctx.service, decoded, lambda: mongo_ping(runtime.mongo))
        dead_letter = dead_letter_to(runtime.dead_letters)
        for record, error in poison:
            await dead_letter(record, error)

    return [kafka]
