"""Reporting's subscribers and routes."""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared import topics
from shared.consuming import decode_or_dead_letter
from shared.contracts.registry import registry_for
from shared.service import Runtime

logger = logging.getLogger(__name__)

CONSUMED = registry_for(topics.ENROLMENT_EVENTS, topics.MATCHING_MATCHES)


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    router = KafkaRouter()

    @router.subscriber(
        topics.ENROLMENT_EVENTS,
        topics.MATCHING_MATCHES,
        group_id=runtime.settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_event(message: KafkaMessage) -> None:
        event = await decode_or_dead_letter(message, CONSUMED, runtime.dead_letters)
        if event is not None:
            logger.debug("consumed %s", event.type)

    return [router]
