"""Matching's store: the Protocols the use cases depend on (:mod:`.protocols`), the
MongoDB adapter (:mod:`.mongo`) and its documents (:mod:`.documents`)."""

from services.matching.repository.documents import (
    check_in_doc,
    check_in_from_doc,
    match_doc,
    match_from_doc,
    participant_doc,
    participant_from_doc,
    volunteer_fields,
    volunteer_from_doc,
)
from services.matching.repository.mongo import EVENT_SOURCE, MongoMatchingRepository
from services.matching.repository.protocols import (
    CheckInRepository,
    Conflict,
    LeaseRepository,
    MatchingRepository,
    MatchQuery,
    MatchRepository,
    Outgoing,
    ParticipantRepository,
    PoolStats,
    RunRecord,
    RunRepository,
    VolunteerRepository,
)

__all__ = [
    "EVENT_SOURCE",
    "CheckInRepository",
    "Conflict",
    "LeaseRepository",
    "MatchQuery",
    "MatchRepository",
    "MatchingRepository",
    "MongoMatchingRepository",
    "Outgoing",
    "ParticipantRepository",
    "PoolStats",
    "RunRecord",
    "RunRepository",
    "VolunteerRepository",
    "check_in_doc",
    "check_in_from_doc",
    "match_doc",
    "match_from_doc",
    "participant_doc",
    "participant_from_doc",
    "volunteer_fields",
    "volunteer_from_doc",
]
