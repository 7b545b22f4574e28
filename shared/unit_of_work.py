"""The unit of work: one MongoDB transaction around one use case.

A use case runs its read-decide-write inside :meth:`MongoUnitOfWork.run`. The
repositories a service's unit of work hands out read and write in the transaction's
session (:attr:`MongoUnitOfWork.session`); :meth:`MongoUnitOfWork.publish` queues the
events announcing the change, and they are written to the outbox in the same
transaction just before it commits (transactional outbox: an event is published if and
only if its change committed). If the work raises, nothing it wrote is kept.

A transient transaction error (a write conflict with a concurrent transaction, a
primary stepping down) runs the work again from the start, with MongoDB's own
``with_transaction`` rules (retry for up to 120 s, commit retried on its own errors), so
the work must be safe to run again: it reads what it decides on inside the transaction.

A unit of work is made per use-case call (a factory per service) because its session
is the call's own; outside :meth:`run` the session is ``None`` and repositories read
committed data without a transaction.

    async def confirm(uow: MatchingUnitOfWork) -> Match:
        match = await uow.matches.get(match_id)
        confirmed, events = match.confirm(now)
        await uow.matches.save(confirmed, expected_version=match.version)
        uow.publish(events)
        return confirmed

    result = await unit_of_work().run(confirm)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.outbox import MongoOutbox, OutboxMessage

T = TypeVar("T")


class MongoUnitOfWork:
    """Base of each service's unit of work (which adds its repositories)."""

    def __init__(
        self,
        client: AsyncMongoClient[Any],
        outbox: MongoOutbox | None = None,
        *,
        read_concern: ReadConcern | None = None,
        write_concern: WriteConcern | None = None,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._read_concern = read_concern
        self._write_concern = write_concern
        self._session: AsyncClientSession | None = None
        self._messages: list[OutboxMessage] = []
        self.now = datetime.now(UTC)

    @property
    def session(self) -> AsyncClientSession | None:
        """The running transaction's session (``None`` outside :meth:`run`)."""
        return self._session

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue events for the outbox; written in this transaction when the work ends."""
        if messages and self._outbox is None:
            raise RuntimeError(f"{type(self).__name__} has no outbox to publish into")
        self._messages.extend(messages)

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction and commit it with the events it published."""
        async with self._client.start_session() as session:

            async def attempt(s: AsyncClientSession) -> T:
                # A retried attempt starts afresh: nothing of the aborted one is kept.
                self._session, self._messages = s, []
                self.now = datetime.now(UTC)
                result = await work(self)
                if self._messages:
                    assert self._outbox is not None  # publish() refuses otherwise
                    await self._outbox.add(self._messages, session=s, now=self.now)
                return result

            try:
                return await session.with_transaction(
                    attempt, read_concern=self._read_concern, write_concern=self._write_concern
                )
            finally:
                self._session, self._messages = None, []
