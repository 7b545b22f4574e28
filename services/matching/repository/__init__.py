"""Matching's store: the Protocols the use cases depend on (:mod:`.protocols`), the
MongoDB adapters (:mod:`.mongo`, bound to ``services.matching.unit_of_work``) and their
documents (:mod:`.documents`)."""

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
from services.matching.repository.mongo import MongoLeases, ensure_indexes
from services.matching.repository.protocols import (
    EVENT_SOURCE,
    CheckInRepository,
    Conflict,
    InboxRepository,
    LeaseRepository,
    MatchQuery,
    MatchRepository,
    Outgoing,
    ParticipantRepository,
    PoolStats,
    RunRecord,
    RunRepository,
    UnitOfWork,
    UnitOfWorkFactory,
    VolunteerRepository,
)

__all__ = [
    "EVENT_SOURCE",
    "CheckInRepository",
    "Conflict",
    "InboxRepository",
    "LeaseRepository",
    "MatchQuery",
    "MatchRepository",
    "MongoLeases",
    "Outgoing",
    "ParticipantRepository",
    "PoolStats",
    "RunRecord",
    "RunRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "VolunteerRepository",
    "check_in_doc",
    "check_in_from_doc",
    "ensure_indexes",
    "match_doc",
    "match_from_doc",
    "participant_doc",
    "participant_from_doc",
    "volunteer_fields",
    "volunteer_from_doc",
]
