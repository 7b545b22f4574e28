"""Matching's unit of work: one MongoDB transaction around one use case
(``shared.unit_of_work``), with matching's repositories bound to its session."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.matching.repository.mongo import (
    MongoCheckIns,
    MongoInbox,
    MongoMatches,
    MongoParticipants,
    MongoRuns,
    MongoVolunteers,
)
from services.matching.repository.protocols import UnitOfWorkFactory
from shared.outbox import MongoOutbox
from shared.unit_of_work import MongoUnitOfWork


class MatchingUnitOfWork(MongoUnitOfWork):
    """A use case's transaction and matching's repositories in it
    (:class:`~services.matching.repository.UnitOfWork`)."""

    def __init__(
        self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any], outbox: MongoOutbox
    ) -> None:
        super().__init__(client, outbox)
        self.participants = MongoParticipants(db, self)
        self.inbox = MongoInbox(db, self)
        self.volunteers = MongoVolunteers(db, self)
        self.runs = MongoRuns(db, self)
        self.matches = MongoMatches(db, self)
        self.check_ins = MongoCheckIns(db, self)


def unit_of_work_factory(
    client: AsyncMongoClient[Any], db: AsyncDatabase[Any], outbox: MongoOutbox
) -> UnitOfWorkFactory:
    """A new :class:`MatchingUnitOfWork` per use-case call."""
    return lambda: MatchingUnitOfWork(client, db, outbox)
