"""Enrolment's subscribers and routes."""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared import topics
from shared.service import Runtime

logger = logging.getLogger(__name__)


def kafka_routers(runtime: Runtime) -> list[KafkaRouter]:
    router = KafkaRouter()

    @router.subscriber(
        topics.ENROLMENT_INBOUND,
        group_id=runtime.settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_submission(message: KafkaMessage) -> None:
        logger.debug("submission received on %s", topics.ENROLMENT_INBOUND)

    return [router]
