"""Matching's subscribers and routes: thin, validate → domain → publish."""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared import topics
from shared.consuming import decode_or_dead_letter
from shared.contracts.enrolment import ParticipantOptedIn
from shared.contracts.registry import registry_for
from shared.service import Runtime

logger = logging.getLogger(__name__)

ENROLMENT_EVENTS = registry_for(topics.ENROLMENT_EVENTS)


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    router = KafkaRouter()

    # NACK_ON_ERROR: commit only after the handler returns; an exception seeks back
    # so the record is redelivered (at-least-once). Poison is dead-lettered and acked.
    @router.subscriber(
        topics.ENROLMENT_EVENTS,
        group_id=runtime.settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_enrolment_event(message: KafkaMessage) -> None:
        event = await decode_or_dead_letter(message, ENROLMENT_EVENTS, runtime.dead_letters)
        if event is None or not isinstance(event.data, ParticipantOptedIn):
            return
        logger.info("participant opted in (enrolment %s)", event.data.enrolment_id)

    return [router]
