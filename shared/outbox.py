"""The transactional outbox every producing service uses, and its relay.

A state change and the events announcing it are written in ONE MongoDB transaction
(:meth:`MongoOutbox.add` inside the caller's session), so an event is published if and
only if its change committed. Rows (the events of one transaction, in order) are kept
after publication for ``retention_s``: the outbox is the platform's durable record of
what it published, and the broker's log is not (the embedded broker forgets its log
when it stops; an operator may delete and re-create a topic on a real cluster).

The relay publishes pending rows in ``seq`` order (per-key order is what consumers rely
on), marks them sent, and records per partition an *anchor*: the offset and ``ce_id``
of the last event it published there. Before publishing it checks the anchors against
the broker (:class:`LogProbe`): if the record at an anchor's offset is gone or is
another event, the log it published into was lost or replaced, so every row sent into
that log (since the anchor's ``log_since``) is queued again and re-published, ahead of
newer rows. Consumers deduplicate by ``ce_id`` (the id is fixed in the row), so a
re-published event that had been consumed changes nothing, and one that had not is
delivered now. See docs/delivery.md ("Broker log loss").

A message that can never be published (it no longer decodes as its contract, or it is
larger than the broker accepts) is parked after ``max_attempts`` tries: counted,
logged and alerted on, and it never blocks other keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel, Field
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.cloudevents import CloudEvent, EnvelopeError, Event, EventRegistry
from shared.positions import Anchor, LogCheck, log_resets_counter
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

Doc = dict[str, Any]

# While nothing is pending the broker's log is checked at this pace (a lost log's events
# are re-published within it even when nothing new is committed).
IDLE_LOG_CHECK_INTERVAL_S = 5.0


class OutboxSettings(BaseModel):
    """Outbox and relay settings, mixed into each producing service's settings (so the
    variables are ``<SERVICE>_OUTBOX_BATCH_SIZE`` and so on)."""

    outbox_batch_size: int = Field(
        default=1000, ge=1, description="Messages per relay round (whole rows)."
    )
    outbox_row_max_messages: int = Field(
        default=200,
        ge=1,
        le=2000,
        description="Events stored per outbox row (a transaction's events share rows).",
    )
    outbox_poll_interval_s: float = Field(
        default=0.5, gt=0, description="Idle relay wake-up (commits also wake it at once)."
    )
    outbox_linger_s: float = Field(
        default=0.05, ge=0, description="Wait after a commit so nearby commits share a round."
    )
    outbox_lease_ttl_s: float = Field(
        default=15.0, gt=0, description="Relay leadership lease; another replica takes over."
    )
    outbox_retention_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="Published rows are kept this long: the window in which events lost "
        "with a broker's log are re-published. Consumers keep applied event ids at least "
        "this long (reporting's dedup_retention_s).",
    )
    outbox_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed publishes of one message (while the broker answers) before "
        "it is parked (counted in commonground_outbox_parked_total, alerted on).",
    )
    outbox_log_check_interval_s: float = Field(
        default=0.5,
        ge=0,
        description="Longest time between two checks that the broker still holds the log "
        "the relay published into (also checked after any failed round).",
    )
    outbox_relay_enabled: bool = True


# ------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class OutboxMessage:
    """One event waiting to be published. ``id`` is fixed when the event is written and is
    the CloudEvent ``ce_id``, so a re-publish is deduplicated downstream."""

    id: str
    topic: str
    key: str
    headers: dict[str, str]
    body: str

    @classmethod
    def of(cls, event: CloudEvent[Event], *, topic: str, key: str) -> OutboxMessage:
        return cls(
            id=event.id, topic=topic, key=key, headers=event.headers(), body=event.body().decode()
        )

    def document(self) -> Doc:
        return {
            "id": self.id,
            "topic": self.topic,
            "key": self.key,
            "headers": self.headers,
            "body": self.body,
        }

    @classmethod
    def from_document(cls, doc: Doc) -> OutboxMessage:
        return cls(
            id=doc["id"],
            topic=doc["topic"],
            key=doc["key"],
            headers=dict(doc["headers"]),
            body=doc["body"],
        )


@dataclass(frozen=True)
class OutboxRow:
    """The events of one transaction (or part of one), in the order they must be sent."""

    id: str
    seq: int
    messages: tuple[OutboxMessage, ...]
    attempts: int = 0
    parked: frozenset[str] = frozenset()  # ids of messages parked in an earlier round


@dataclass(frozen=True)
class Delivered:
    """Where the broker put a published message."""

    partition: int
    offset: int


class Sequencer:
    """Outbox order: microseconds since the epoch, strictly increasing in this process.
    Rows of one transaction keep their order; a later transaction on the same key (which
    reads the earlier one's committed state) always takes a later time."""

    def __init__(self) -> None:
        self._last = 0

    def take(self, n: int, now: datetime) -> range:
        start = max(int(now.timestamp() * 1_000_000), self._last + 1)
        self._last = start + n - 1
        return range(start, start + n)


# ------------------------------------------------------------------------------ storage


class OutboxStore(Protocol):
    """What the relay needs of the outbox (an in-memory fake implements it in tests)."""

    async def pending(self, max_messages: int) -> list[OutboxRow]: ...
    async def mark_sent(self, row_ids: Sequence[str]) -> None: ...
    async def mark_failed(self, row_ids: Sequence[str]) -> None: ...
    async def mark_parked(self, parked: Mapping[str, Sequence[tuple[str, str]]]) -> None:
        """Record, per row, messages that will never be published (id, reason)."""
        ...

    async def backlog(self) -> int: ...
    async def acquire_lease(self, owner: str, ttl_s: float) -> bool: ...
    async def release_lease(self, owner: str) -> None: ...
    async def anchors(self) -> list[Anchor]: ...
    async def save_anchors(self, delivered: Sequence[Anchor]) -> None: ...
    async def requeue_sent_since(self, since: datetime) -> int: ...
    async def drop_anchors(self, anchors: Sequence[Anchor]) -> None: ...


def anchor_id(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class MongoOutbox:
    """The outbox in the service's own database: ``outbox`` (rows), ``outbox_lease``
    (which replica relays), ``outbox_anchors`` (per partition: the last event published
    and since when the relay has published into that log)."""

    LEASE_ID = "outbox-relay"

    def __init__(
        self, db: AsyncDatabase[Any], *, retention_s: int, max_messages_per_row: int = 200
    ) -> None:
        self._outbox = db["outbox"]
        self._lease = db["outbox_lease"]
        self._anchors = db["outbox_anchors"]
        self._retention_s = retention_s
        self._per_row = max_messages_per_row
        self._seq = Sequencer()

    async def ensure_indexes(self) -> None:
        await self._outbox.create_index([("pending", ASCENDING), ("seq", ASCENDING)])
        # Published rows expire after the retention (a requeued row has sent_at null).
        await self._outbox.create_index("sent_at", expireAfterSeconds=self._retention_s)

    # -- writing (inside the caller's transaction)

    def documents(self, messages: Sequence[OutboxMessage], now: datetime) -> list[Doc]:
        """Rows for ``messages`` (at most ``max_messages_per_row`` each), in order."""
        chunks = [messages[i : i + self._per_row] for i in range(0, len(messages), self._per_row)]
        seqs = self._seq.take(len(chunks), now)
        return [
            {
                "_id": str(uuid.uuid4()),
                "seq": seq,
                "messages": [m.document() for m in chunk],
                "count": len(chunk),
                "pending": True,
                "attempts": 0,
                "created_at": now,
                "sent_at": None,
            }
            for seq, chunk in zip(seqs, chunks, strict=True)
        ]

    async def add(
        self,
        messages: Sequence[OutboxMessage],
        *,
        session: AsyncClientSession,
        now: datetime | None = None,
    ) -> None:
        """Queue ``messages`` in the caller's transaction (``session``)."""
        if messages:
            rows = self.documents(messages, now or datetime.now(UTC))
            await self._outbox.insert_many(rows, ordered=True, session=session)

    async def withdraw(self, key: str, ce_type: str, *, session: AsyncClientSession) -> None:
        """Remove every message of ``ce_type`` on ``key`` from the outbox, pending or
        retained (erasure: a learner's wrapped data key must not be re-published)."""
        await self._outbox.update_many(
            {"messages.key": key},
            {"$pull": {"messages": {"key": key, "headers.ce_type": ce_type}}},
            session=session,
        )

    # -- the relay's side

    async def pending(self, max_messages: int) -> list[OutboxRow]:
        # First the sizes only (small documents), then just the rows this round takes.
        chosen: list[str] = []
        total = 0
        sizes = (
            self._outbox.find({"pending": True}, {"count": 1})
            .sort([("seq", ASCENDING)])
            .limit(max_messages)
        )
        async for doc in sizes:
            chosen.append(doc["_id"])
            total += int(doc.get("count", 1))
            if total >= max_messages:
                break
        await sizes.close()
        if not chosen:
            return []
        docs = self._outbox.find({"_id": {"$in": chosen}, "pending": True})
        rows = [
            OutboxRow(
                id=doc["_id"],
                seq=doc["seq"],
                messages=tuple(OutboxMessage.from_document(m) for m in doc["messages"]),
                attempts=int(doc.get("attempts", 0)),
                parked=frozenset(p["id"] for p in doc.get("parked", ())),
            )
            async for doc in docs
        ]
        return sorted(rows, key=lambda row: row.seq)

    async def mark_sent(self, row_ids: Sequence[str]) -> None:
        if row_ids:
            now = datetime.now(UTC)
            await self._outbox.update_many(
                {"_id": {"$in": list(row_ids)}},
                {"$set": {"pending": False, "sent_at": now}},
            )

    async def mark_failed(self, row_ids: Sequence[str]) -> None:
        if row_ids:
            await self._outbox.update_many(
                {"_id": {"$in": list(row_ids)}}, {"$inc": {"attempts": 1}}
            )

    async def mark_parked(self, parked: Mapping[str, Sequence[tuple[str, str]]]) -> None:
        now = datetime.now(UTC)
        ops = [
            UpdateOne(
                {"_id": row_id},
                {
                    "$push": {
                        "parked": {
                            "$each": [{"id": m, "reason": r, "at": now} for m, r in messages]
                        }
                    }
                },
            )
            for row_id, messages in sorted(parked.items())
            if messages
        ]
        if ops:
            await self._outbox.bulk_write(ops, ordered=False)

    async def backlog(self) -> int:
        cursor = await self._outbox.aggregate(
            [{"$match": {"pending": True}}, {"$group": {"_id": None, "n": {"$sum": "$count"}}}]
        )
        docs = await cursor.to_list()
        return int(docs[0]["n"]) if docs else 0

    async def acquire_lease(self, owner: str, ttl_s: float) -> bool:
        """One relay publishes at a time; another takes over when the lease expires."""
        now = datetime.now(UTC)
        try:
            await self._lease.find_one_and_update(
                {"_id": self.LEASE_ID, "$or": [{"owner": owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": owner, "expires_at": now + timedelta(seconds=ttl_s)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_lease(self, owner: str) -> None:
        await self._lease.delete_one({"_id": self.LEASE_ID, "owner": owner})

    async def anchors(self) -> list[Anchor]:
        return [
            Anchor(
                topic=d["topic"],
                partition=int(d["partition"]),
                offset=int(d["offset"]),
                ce_id=d["ce_id"],
                log_since=_utc(d["log_since"]),
            )
            async for d in self._anchors.find({})
        ]

    async def save_anchors(self, delivered: Sequence[Anchor]) -> None:
        if delivered:
            await self._anchors.bulk_write(
                [
                    UpdateOne(
                        {"_id": anchor_id(a.topic, a.partition)},
                        {
                            "$set": {"offset": a.offset, "ce_id": a.ce_id},
                            "$setOnInsert": {
                                "topic": a.topic,
                                "partition": a.partition,
                                "log_since": a.log_since,
                            },
                        },
                        upsert=True,
                    )
                    for a in delivered
                ],
                ordered=False,
            )

    async def drop_anchors(self, anchors: Sequence[Anchor]) -> None:
        if anchors:
            ids = [anchor_id(a.topic, a.partition) for a in anchors]
            await self._anchors.delete_many({"_id": {"$in": ids}})

    async def requeue_sent_since(self, since: datetime) -> int:
        result = await self._outbox.update_many(
            {"pending": False, "sent_at": {"$gte": since}},
            {
                "$set": {
                    "pending": True,
                    "sent_at": None,
                    "attempts": 0,
                    "requeued_at": datetime.now(UTC),
                }
            },
        )
        return int(result.modified_count)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------ the broker


Publish = Callable[[OutboxMessage], Awaitable[Delivered]]


class UnpublishableMessage(Exception):
    """A stored event that can never be published as it is: parked at once."""


class RecordSink(Protocol):
    """Where the relay's records go (``shared.kafka.RecordSender`` on a broker)."""

    async def send(
        self, topic: str, value: bytes, *, key: str, headers: Mapping[str, str]
    ) -> RecordMetadata: ...


def contract_publisher(sender: RecordSink, registry: EventRegistry) -> Publish:
    """Publishes an outbox message as stored (``ce_id`` = the id fixed when it was
    written; the body is not serialised again) once it still validates against its
    contract: a message that does not is parked, never sent."""

    async def publish(message: OutboxMessage) -> Delivered:
        body = message.body.encode()
        try:
            registry.decode(body, message.headers)
        except EnvelopeError:
            # Not the decoder's text: pydantic quotes input values, and a body may hold
            # special category data.
            ce_type = message.headers.get("ce_type", "unknown type")
            raise UnpublishableMessage(f"{ce_type} does not decode as its contract") from None
        metadata = await sender.send(message.topic, body, key=message.key, headers=message.headers)
        return Delivered(partition=metadata.partition, offset=metadata.offset)

    return publish


# ------------------------------------------------------------------------------ the relay


def _transient(exc: BaseException) -> bool:
    """An outage (retried for as long as it lasts), not a fault of the message."""
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaConnectionError)
    return isinstance(exc, TimeoutError | ConnectionError | OSError)


class RelayMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        self.published = telemetry.counter(
            "commonground_outbox_published_total",
            "Outbox messages published, by topic.",
            ("topic",),
        )
        self.failures = telemetry.counter(
            "commonground_outbox_publish_failures_total", "Outbox publish attempts that failed."
        )
        self.parked = telemetry.counter(
            "commonground_outbox_parked_total",
            "Outbox messages that could not be published and were parked, by reason.",
            ("reason",),
        )
        self.backlog = telemetry.gauge(
            "commonground_outbox_backlog", "Outbox messages committed but not yet published."
        )
        self.batch = telemetry.histogram(
            "commonground_outbox_batch_rows",
            "Messages published per relay round.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
        )
        self.log_resets = log_resets_counter(telemetry)
        self.republished = telemetry.counter(
            "commonground_outbox_requeued_total",
            "Published outbox rows queued again after the log they went to was lost.",
        )


class OutboxRelay:
    """Publishes committed outbox rows; see the module docstring."""

    def __init__(
        self,
        store: OutboxStore,
        publish: Publish,
        settings: OutboxSettings,
        metrics: RelayMetrics,
        *,
        log_check: LogCheck | None = None,
        can_publish: Callable[[], bool] = lambda: True,
        component: str = "outbox",
        max_backoff_s: float = 10.0,
    ) -> None:
        self._store = store
        self._publish = publish
        self._settings = settings
        self._metrics = metrics
        self._log_check = log_check
        self._can_publish = can_publish
        self._component = component
        self._max_backoff_s = max_backoff_s
        self._owner = f"relay-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._checked_at: float | None = None  # None: check before the next round
        self.backlog = 0

    def wake(self) -> None:
        """Called after a commit: publish now rather than at the next poll."""
        self._wake.set()

    async def check_log(self) -> int:
        """Re-queue what was published into a log the broker no longer holds. Returns
        how many rows were queued again."""
        if self._log_check is None:
            return 0
        anchors = await self._store.anchors()
        replaced = await self._log_check.replaced(anchors)
        self._checked_at = asyncio.get_running_loop().time()
        return await self._republish(replaced, "its event at that offset is gone")

    async def _republish(self, replaced: Sequence[Anchor], why: str) -> int:
        """Queue again every row sent into the logs of ``replaced`` anchors."""
        if not replaced:
            return 0
        for anchor in replaced:
            self._metrics.log_resets.labels(
                self._component, anchor.topic, str(anchor.partition)
            ).inc()
            logger.error(
                "%s: the broker no longer holds the log of %s[%d] this relay published "
                "into since %s (offset %d: %s): re-publishing from the outbox",
                self._component,
                anchor.topic,
                anchor.partition,
                anchor.log_since.isoformat(),
                anchor.offset,
                why,
            )
        since = min(a.log_since for a in replaced)
        requeued = await self._store.requeue_sent_since(since)
        await self._store.drop_anchors(replaced)
        self._metrics.republished.inc(requeued)
        logger.warning(
            "%s: %d published outbox row(s) since %s queued again",
            self._component,
            requeued,
            since.isoformat(),
        )
        return requeued

    def _check_due(self, idle: bool) -> bool:
        if self._log_check is None:
            return False
        if self._checked_at is None:
            return True
        interval = self._settings.outbox_log_check_interval_s
        if idle:  # nothing to publish: a slower look suffices
            interval = max(interval, IDLE_LOG_CHECK_INTERVAL_S)
        return asyncio.get_running_loop().time() - self._checked_at >= interval

    async def run_once(self) -> int:
        """Publish one round of pending rows; returns how many messages were published.
        Raises after marking the complete rows if any message failed (caller backs off)."""
        rows = await self._store.pending(self._settings.outbox_batch_size)
        if self._check_due(idle=not rows) and await self.check_log():
            rows = await self._store.pending(self._settings.outbox_batch_size)
        if not rows:
            return 0
        round_started = datetime.now(UTC)
        chains: dict[tuple[str, str], list[tuple[OutboxRow, OutboxMessage]]] = {}
        for row in rows:
            for message in row.messages:
                chains.setdefault((message.topic, message.key), []).append((row, message))
        failed_rows: set[str] = set()
        faulty_rows: set[str] = set()  # failed for a reason other than an outage
        parked: dict[str, list[tuple[str, str]]] = {}
        failures: list[BaseException] = []
        delivered: dict[tuple[str, int], Anchor] = {}
        published = 0

        def park(row: OutboxRow, message: OutboxMessage, reason: str, detail: str) -> None:
            logger.error(
                "%s: outbox message %s (row %s, topic %s) cannot be published (%s); parked",
                self._component,
                message.id,
                row.id,
                message.topic,
                detail,
            )
            parked.setdefault(row.id, []).append((message.id, reason))
            self._metrics.parked.labels(reason).inc()

        async def publish_in_order(chain: list[tuple[OutboxRow, OutboxMessage]]) -> None:
            nonlocal published
            for position, (row, message) in enumerate(chain):
                if message.id in row.parked:
                    continue
                try:
                    where = await self._publish(message)
                except UnpublishableMessage as exc:
                    park(row, message, "invalid", str(exc))
                    continue
                except MessageSizeTooLargeError:
                    park(row, message, "too_large", f"{len(message.body)} byte body")
                    continue
                except Exception as exc:  # the rest of this key waits for a later round
                    if not _transient(exc):
                        if row.attempts + 1 >= self._settings.outbox_max_attempts:
                            detail = f"{type(exc).__name__}, {row.attempts + 1} tries"
                            park(row, message, "failed", detail)
                            continue
                        faulty_rows.add(row.id)
                    failures.append(exc)
                    failed_rows.update(r.id for r, _ in chain[position:])
                    return
                published += 1
                self._metrics.published.labels(message.topic).inc()
                tp = (message.topic, where.partition)
                if tp not in delivered or delivered[tp].offset < where.offset:
                    delivered[tp] = Anchor(
                        message.topic, where.partition, where.offset, message.id, round_started
                    )

        await asyncio.gather(*(publish_in_order(chain) for chain in chains.values()))
        # A failed row goes again whole (its published messages too: same ce_ids).
        done = [row.id for row in rows if row.id not in failed_rows]
        await self._store.mark_parked(parked)
        await self._store.mark_sent(done)
        if delivered and self._log_check is not None:
            # Offsets only grow in one log: an acknowledged offset at or below the last
            # one recorded for its partition means the log was replaced since the last
            # check (e.g. a topic re-created, auto-created again by this very publish).
            recorded = {(a.topic, a.partition): a for a in await self._store.anchors()}
            behind = [
                recorded[tp]
                for tp, anchor in delivered.items()
                if tp in recorded and anchor.offset <= recorded[tp].offset
            ]
            await self._republish(behind, "a newer publish got a lower offset")
        await self._store.save_anchors(list(delivered.values()))
        self._metrics.batch.observe(published)
        if failures:
            await self._store.mark_failed(sorted(faulty_rows))
            self._metrics.failures.inc(len(failures))
            raise failures[0]
        return published

    async def refresh_backlog(self) -> int:
        self.backlog = await self._store.backlog()
        self._metrics.backlog.set(self.backlog)
        return self.backlog

    async def drain(self) -> int:
        """Publish until nothing is pending (tests, and shutdown paths)."""
        total = 0
        while True:
            published = await self.run_once()
            total += published
            if published == 0:
                return total

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            drained = True
            try:
                if self._can_publish() and await self._store.acquire_lease(
                    self._owner, self._settings.outbox_lease_ttl_s
                ):
                    published = await self.run_once()
                    drained = published == 0
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._checked_at = None  # the broker may have lost its log meanwhile
                delay = min(0.2 * 2**failures, self._max_backoff_s)
                # Rows stay pending and go again; during shutdown this is expected.
                logger.log(
                    logging.WARNING if self._can_publish() else logging.INFO,
                    "%s: outbox relay round failed (%s); retrying in %.1fs",
                    self._component,
                    type(exc).__name__,
                    delay,
                )
                await self._refresh_backlog_quietly()
                await asyncio.sleep(delay)
                continue
            await self._refresh_backlog_quietly()
            if drained:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._settings.outbox_poll_interval_s)
                except TimeoutError:
                    continue
                # Woken by a commit: linger a moment so that commits arriving together
                # share a round (each round costs several database writes).
                await asyncio.sleep(self._settings.outbox_linger_s)

    async def _refresh_backlog_quietly(self) -> None:
        """The backlog gauge stays true when a round fails (unless the database is down)."""
        try:
            await self.refresh_backlog()
        except Exception as exc:
            logger.info("%s: outbox backlog not measured (%s)", self._component, type(exc).__name__)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"{self._component}-outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # Let a round in progress finish (and mark its rows sent), then give up.
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._log_check is not None:
            await self._log_check.close()
        try:
            await self._store.release_lease(self._owner)
        except Exception as exc:  # the lease lapses by itself
            logger.info("could not release the relay lease: %s", type(exc).__name__)
