"""The enrolment service's unit of work: one transaction per use-case call.

A use case runs its reads, decisions and writes in :meth:`EnrolmentUnitOfWork.run`
through the repositories bound to it, and queues its events with ``publish``; they are
written to the outbox in the same transaction (``shared.unit_of_work``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, Self, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.enrolment.privacy import LearnerErasures, MongoLearnerErasures
from services.enrolment.repository import (
    AlreadyExists,
    EnrolmentRepository,
    MongoEnrolmentRepository,
    SubmissionSealer,
)
from shared.mongo import is_duplicate_key
from shared.outbox import MongoOutbox, OutboxMessage
from shared.unit_of_work import MongoUnitOfWork

T = TypeVar("T")


class UnitOfWork(Protocol):
    """What the use cases ask of a unit of work (in memory in unit tests)."""

    @property
    def enrolments(self) -> EnrolmentRepository: ...

    @property
    def erasures(self) -> LearnerErasures: ...

    def publish(self, messages: Sequence[OutboxMessage]) -> None: ...

    async def withdraw(self, key: str, ce_type: str) -> None:
        """Remove the ``ce_type`` events on Kafka key ``key`` from the outbox."""
        ...

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class EnrolmentUnitOfWork(MongoUnitOfWork):
    """The enrolments and erasures of one transaction, with its outbox."""

    def __init__(
        self,
        client: AsyncMongoClient[Any],
        db: AsyncDatabase[Any],
        outbox: MongoOutbox,
        sealer: SubmissionSealer | None = None,
    ) -> None:
        super().__init__(client, outbox)
        self._events = outbox
        self._enrolments = MongoEnrolmentRepository(db, self, sealer)
        self._erasures = MongoLearnerErasures(db, self)

    @property
    def enrolments(self) -> MongoEnrolmentRepository:
        return self._enrolments

    @property
    def erasures(self) -> MongoLearnerErasures:
        return self._erasures

    async def withdraw(self, key: str, ce_type: str) -> None:
        assert self.session is not None, "withdraw runs inside run()"
        await self._events.withdraw(key, ce_type, session=self.session)

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        # A taken id aborts the transaction; the use case sees it after the abort (as a
        # conflict it decides again from its reads), never mid-work.
        try:
            return await super().run(work)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if is_duplicate_key(exc):
                raise AlreadyExists(str(exc)) from exc
            raise


def unit_of_work_factory(
    client: AsyncMongoClient[Any],
    db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    sealer: SubmissionSealer | None = None,
) -> Callable[[], EnrolmentUnitOfWork]:
    """A new unit of work per use-case call (its session is the call's own)."""
    return lambda: EnrolmentUnitOfWork(client, db, outbox, sealer)
