"""Which events travel on which topic, for decoding and for the JSON Schema export."""

from __future__ import annotations

from shared import topics
from shared.cloudevents import Event, EventRegistry
from shared.contracts.enrolment import ENROLMENT_EVENTS, INBOUND_SUBMISSIONS, REJECTION_EVENTS
from shared.contracts.matching import MATCH_EVENTS, VOLUNTEER_EVENTS

EVENTS_BY_TOPIC: dict[str, tuple[type[Event], ...]] = {
    topics.ENROLMENT_INBOUND: INBOUND_SUBMISSIONS,
    topics.ENROLMENT_EVENTS: ENROLMENT_EVENTS,
    topics.ENROLMENT_REJECTED: REJECTION_EVENTS,
    topics.MATCHING_VOLUNTEERS: VOLUNTEER_EVENTS,
    topics.MATCHING_MATCHES: MATCH_EVENTS,
}


def registry_for(*topic_names: str) -> EventRegistry:
    return EventRegistry(*(m for t in topic_names for m in EVENTS_BY_TOPIC[t]))


def all_events() -> tuple[type[Event], ...]:
    return tuple(m for models in EVENTS_BY_TOPIC.values() for m in models)
