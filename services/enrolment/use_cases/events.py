"""Enrolment events as outbox messages: on ``enrolment.events.v1``, keyed by the learner
(so a learner's events stay in order), personal fields sealed under the learner's data
key when there is a vault."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.enrolment.domain import Enrolment
from services.enrolment.privacy import LearnerVault, needs_sealing, seal_event
from shared import topics
from shared.cloudevents import CloudEvent, Event
from shared.outbox import OutboxMessage

SOURCE = "/commonground/enrolment"


def event_message(event: Event, enrolment: Enrolment) -> OutboxMessage:
    """One event about an enrolment, as it goes to the outbox."""
    return OutboxMessage.of(
        CloudEvent(data=event, source=SOURCE, subject=enrolment.enrolment_id),
        topic=topics.ENROLMENT_EVENTS,
        key=enrolment.learner,
    )


class EventMessages:
    """Outbox messages of accepted enrolments' events, sealed when there is a vault."""

    def __init__(self, vault: LearnerVault | None) -> None:
        self._vault = vault

    async def messages(
        self, items: Sequence[tuple[Enrolment, Sequence[Event]]], now: datetime
    ) -> list[OutboxMessage]:
        """With a vault, personal fields are sealed under each learner's data key, and the
        key (wrapped for consumers) goes first on the learner's Kafka key, so it always
        precedes what it opens."""
        keys = {}
        if self._vault is not None:
            learners = {e.learner for e, events in items if any(map(needs_sealing, events))}
            keys = await self._vault.keys_for(learners)
        messages: list[OutboxMessage] = []
        announced: set[str] = set()
        for enrolment, events in items:
            dek = keys.get(enrolment.learner)
            for event in events:
                if dek is not None and needs_sealing(event):
                    if enrolment.learner not in announced and self._vault is not None:
                        announced.add(enrolment.learner)
                        messages.append(event_message(self._vault.key_event(dek, now), enrolment))
                    event = seal_event(event, dek)
                messages.append(event_message(event, enrolment))
        return messages
