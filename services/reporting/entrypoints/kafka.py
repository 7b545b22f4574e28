"""Reporting's Kafka entrypoint: the projection subscriber (the work is in projector.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.reporting.settings import ReportingSettings
from services.reporting.use_cases.projector import Projector
from shared import topics
from shared.consuming import (
    consume_policy,
    dead_letter_to,
    exclude_from_commit,
    raw_body_decoder,
    tolerant_batch_parser,
)
from shared.contracts.registry import registry_for
from shared.dead_letters import RecordLike
from shared.mongo import mongo_ping
from shared.positions import TopicPartition, rewind
from shared.service import Runtime
from shared.telemetry import Telemetry, record_span, record_trace

logger = logging.getLogger(__name__)

CONSUMED = registry_for(topics.ENROLMENT_EVENTS, topics.MATCHING_MATCHES)


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    settings = cast(ReportingSettings, runtime.settings)
    router = KafkaRouter()

    # One batch = one MongoDB transaction. NACK_ON_ERROR: the offsets are committed only
    # after the handler returns, i.e. after the transaction has committed, and exactly
    # the batch's offsets (shared.consuming.tolerant_batch_parser); if it raises
    # (the database stayed unavailable through the retries) every partition of the batch
    # is rewound to its first record and the batch comes again. Redelivered records are
    # fenced by the positions stored with the read models.
    @router.subscriber(
        topics.ENROLMENT_EVENTS,
        topics.MATCHING_MATCHES,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        batch=True,
        max_records=settings.projection_max_records,
        batch_timeout_ms=settings.projection_batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser,
        decoder=raw_body_decoder,
        title="reporting-projection",
        description="Projects enrolment and match events into the reporting read models.",
    )
    async def project(message: KafkaMessage) -> None:
        async def healthy() -> bool:
            return await mongo_ping(runtime.mongo)

        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        projector: Projector = runtime.state["projector"]
        continue_traces(runtime.telemetry, records)
        # Transient errors are retried with backoff in the projector. Then, database
        # down: rewind, retried until it is back. Database up: the batch's records go
        # one by one, and any that still fail are dead-lettered (exhausted) instead of
        # blocking their partitions.
        result = await consume_policy(
            records,
            lambda: projector.handle(records, rewind=lambda tps: rewind_batch(message, tps)),
            lambda r: projector.handle([r]),
            healthy=healthy,
            failed=dead_letter_to(runtime.dead_letters),
            what="projection batch",
        )
        if result is None:
            return
        logger.debug(
            "batch of %d: %d applied, %d duplicates, %d poison",
            result.records,
            result.applied,
            result.duplicate_offsets + result.duplicate_event_ids,
            result.poison,
        )

    return [router]


async def rewind_batch(
    message: KafkaMessage, partitions: set[TopicPartition]
) -> set[TopicPartition]:
    """Seek ``partitions`` back to their start and keep this batch from committing them."""
    exclude_from_commit(message, partitions)
    return await rewind(message.consumer, partitions)


def continue_traces(telemetry: Telemetry, records: Sequence[RecordLike]) -> None:
    """A short span per record under the record's own trace, linked to the batch span:
    reporting's receipt of each event in the trace of the request that caused it (the
    link leads from there to the batch's span and its MongoDB writes)."""
    tracer = telemetry.tracer()
    for record in records:
        if record_trace(record.headers) is not None:
            with record_span(tracer, record, "project"):
                pass
