"""Topic names of contract v1. Keys are documented in README (Partitioning)."""

from __future__ import annotations

ENROLMENT_INBOUND = "enrolment.inbound.v1"
"""Raw provider submissions (key: provider ref)."""

ENROLMENT_EVENTS = "enrolment.events.v1"
"""Canonical enrolment lifecycle events (key: learner pseudonym)."""

ENROLMENT_REJECTED = "enrolment.rejected.v1"
"""Refused submissions with machine-readable reasons (key: provider ref)."""

MATCHING_VOLUNTEERS = "matching.volunteers.v1"
"""Volunteer registered / updated / DBS expired (key: volunteer id)."""

MATCHING_MATCHES = "matching.matches.v1"
"""Match proposed / confirmed / declined / ended (key: local authority)."""

CONTRACT_TOPICS: tuple[str, ...] = (
    ENROLMENT_INBOUND,
    ENROLMENT_EVENTS,
    ENROLMENT_REJECTED,
    MATCHING_VOLUNTEERS,
    MATCHING_MATCHES,
)

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic`` (poison records, original key kept)."""
    return topic if topic.endswith(DLQ_SUFFIX) else f"{topic}{DLQ_SUFFIX}"


def all_topics() -> tuple[str, ...]:
    """Every topic the platform needs: contract topics and their dead-letter topics."""
    return CONTRACT_TOPICS + tuple(dead_letter_topic(t) for t in CONTRACT_TOPICS)
