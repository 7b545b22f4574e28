"""Consuming Kafka records safely: decoding with poison going to the DLQ, parsers that
survive any header bytes, offset commits of exactly what was processed, and the line
between an outage (wait) and a record that keeps failing (dead-letter).

Every subscriber of the platform is declared with::

    ack_policy=AckPolicy.NACK_ON_ERROR,          # commit after success, rewind on error
    parser=tolerant_parser / tolerant_batch_parser,
    decoder=raw_body_decoder,

See docs/delivery.md for the guarantees this gives and why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream.kafka.message import KafkaAckableMessage
from faststream.message import StreamMessage

from shared.cloudevents import CloudEvent, EnvelopeError, Event, EventRegistry
from shared.dead_letters import TRANSIENT_ERRORS, DeadLetterPublisher

logger = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[Any, Any]"


async def decode_or_dead_letter(
    record: Record, registry: EventRegistry, dead_letters: DeadLetterPublisher
) -> CloudEvent[Event] | None:
    """The record as a CloudEvent, or ``None`` after dead-lettering it as poison.

    Poison is never retried: an unparseable body, a schema-invalid payload or an
    unknown type/version cannot succeed on redelivery.
    """
    try:
        return registry.decode(record.value or b"", dict(record.headers or ()))
    except EnvelopeError as exc:
        await dead_letters.send(record, exc, kind="poison")
        return None


# ---------------------------------------------------------------------------------------
# Parsing: any header bytes reach the handler; commits cover exactly the records handled.


class ExactCommitMessage(KafkaAckableMessage):
    """A consumed message whose ``ack`` commits ``{partition: last offset + 1}`` for the
    records of *this* message only, on partitions this consumer still owns.

    FastStream's ``ack`` calls ``consumer.commit()`` without arguments, which commits
    the consumer's *position* on every assigned partition: everything fetched so far,
    whether or not it was handled (a record whose parsing failed is neither acked nor
    rewound, so the next message's ack would commit past it), and, after a rebalance,
    positions of partitions that moved. An explicit commit of the handled records cannot
    do either. A partition that moved away mid-batch is not committed (its new owner
    re-reads from the last commit; every effect is idempotent), and a commit refused
    after a rebalance (``CommitFailedError``) is logged, not raised: the effect is
    already durable, and the records come again to whoever owns them next.
    """

    # Partitions the handler sought back to their start: their records of this message
    # are not committed (a commit past them would outlive the seek after a rebalance,
    # and the new log's first records would be skipped).
    rewound: frozenset[tuple[str, int]] = frozenset()

    async def ack(self) -> None:
        if not self.committed:
            records = [
                r for r in _records(self.raw_message) if (r.topic, r.partition) not in self.rewound
            ]
            await commit_exactly(self.consumer, records)
        await super(KafkaAckableMessage, self).ack()


def exclude_from_commit(message: Any, partitions: Iterable[tuple[str, int]]) -> None:
    """Leave ``partitions`` out of the commit of ``message`` (an ExactCommitMessage)."""
    if isinstance(message, ExactCommitMessage):
        message.rewound = message.rewound | frozenset(partitions)


def _records(raw: Record | tuple[Record, ...]) -> tuple[Record, ...]:
    return raw if isinstance(raw, tuple) else (raw,)


def offsets_to_commit(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """``{partition: highest offset + 1}`` over ``records``."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


async def commit_exactly(consumer: Any, records: Iterable[Record]) -> None:
    offsets = offsets_to_commit(records)
    if not offsets:
        return
    owned = set(consumer.assignment())
    moved = sorted(f"{tp.topic}[{tp.partition}]" for tp in offsets if tp not in owned)
    if moved:
        logger.info(
            "partitions %s moved to another consumer during processing; not committed "
            "(the new owner re-reads them, effects are idempotent)",
            ", ".join(moved),
        )
    offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        logger.warning(
            "offset commit refused (%s), probably a rebalance: these records will be "
            "delivered again and skipped as already applied",
            type(exc).__name__,
        )


def _exact(message: StreamMessage[Any]) -> StreamMessage[Any]:
    if type(message) is KafkaAckableMessage:
        # The same copy FastStream's StreamMessage.__copy__ makes, as our subclass.
        exact = ExactCommitMessage.__new__(ExactCommitMessage)
        exact.__dict__.update(message.__dict__)
        return exact
    return message


class HeaderBytes(bytes):
    """A header value exactly as received, whose ``decode()`` replaces invalid UTF-8
    instead of raising unless asked to be strict (``decode("utf-8", "strict")``).
    ``null`` marks a header that had no value at all (sent on as null by dead letters)."""

    null: bool = False

    def decode(self, encoding: str = "utf-8", errors: str = "replace") -> str:
        return super().decode(encoding, errors)


def _null_header() -> HeaderBytes:
    value = HeaderBytes(b"")
    value.null = True
    return value


def _lenient(record: Record) -> Record:
    """The same record (same bytes everywhere) whose header values decode leniently."""
    headers = [
        (k, _null_header() if v is None else HeaderBytes(v)) for k, v in record.headers or ()
    ]
    return dataclasses.replace(record, headers=headers)


def _decodes(record: Record) -> bool:
    try:
        for _, value in record.headers or ():
            value.decode()
    except (UnicodeDecodeError, AttributeError):
        return False
    return True


async def tolerant_parser(
    record: Record,
    original: Callable[[Record], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream decodes every header value as UTF-8 (in its parser, and again in its
    decoder), so one record with binary or null header bytes would fail before the
    handler runs: with NACK_ON_ERROR it is rewound and fails again for ever, blocking its
    partition. Such a record is handed on with :class:`HeaderBytes` values instead: the
    same bytes (a dead letter keeps them exactly), decoding leniently."""
    return _exact(await original(record if _decodes(record) else _lenient(record)))


async def tolerant_batch_parser(
    records: tuple[Record, ...],
    original: Callable[[tuple[Record, ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """:func:`tolerant_parser` for batch subscribers: one record with binary headers
    does not sink the batch."""
    return _exact(await original(tuple(r if _decodes(r) else _lenient(r) for r in records)))


async def raw_body_decoder(
    message: StreamMessage[Any],
    original: Callable[[StreamMessage[Any]], Awaitable[Any]],
) -> Any:
    """The body as bytes (a list of them for a batch), never parsed by FastStream.

    FastStream decodes a body as JSON before the handler runs when its ``content-type``
    says JSON, so a poison record (say ``content-type: application/json`` over bytes
    that are not JSON) would raise there, be rewound and fail again for ever, blocking
    its partition. Our handlers read the records themselves (CloudEvents are decoded by
    ``shared.cloudevents``, poison dead-lettered), so the body is handed on untouched."""
    return message.body


# ---------------------------------------------------------------------------------------
# Transient failures: an outage is waited out, a record that keeps failing is not.


class DependencyUnavailable(Exception):
    """The database (or another dependency) does not answer: an outage, not the fault of
    the records being handled. Raised out of a handler, the records are rewound and
    come again (the consumer keeps retrying with backoff until the dependency is back);
    nothing is dead-lettered for an outage."""


class RetriesExhausted(Exception):
    """Transient errors persisted through the retries while the dependency answered its
    health probe: the failure belongs to these records; dead-letter them (``exhausted``)
    rather than block their partition for ever."""


Probe = Callable[[], Awaitable[bool]]


async def reachable(probe: Probe, timeout_s: float = 5.0) -> bool:
    """Whether ``probe()`` answers true within ``timeout_s`` (any error counts as no)."""
    try:
        return bool(await asyncio.wait_for(probe(), timeout_s))
    except Exception:
        return False


async def classify_transient(error: BaseException, healthy: Probe) -> RetriesExhausted:
    """After transient retries were used up: raise :class:`DependencyUnavailable` if the
    dependency is down, else return the :class:`RetriesExhausted` to handle."""
    if not await reachable(healthy):
        raise DependencyUnavailable(
            f"dependency unavailable ({type(error).__name__}); records will be retried"
        ) from error
    return RetriesExhausted(f"{type(error).__name__}: {error}"[:500])


# ---------------------------------------------------------------------------------------
# The consume policy of every subscriber: handle; after transient retries, wait out an
# outage (rewind) or go one by one and dead-letter only the records that keep failing.

R = TypeVar("R")
T = TypeVar("T")
Failed = Callable[[R, BaseException], Awaitable[None]]


def dead_letter_to(dead_letters: DeadLetterPublisher) -> Failed[Record]:
    """A ``failed`` callback for :func:`consume_policy` that dead-letters the record at
    once: ``exhausted`` for :class:`RetriesExhausted`, ``poison`` for anything else."""

    async def send(record: Record, error: BaseException) -> None:
        kind = "exhausted" if isinstance(error, RetriesExhausted) else "poison"
        await dead_letters.send(record, error, kind=kind)

    return send


async def consume_policy(
    records: Sequence[R],
    handle_all: Callable[[], Awaitable[T]],
    handle_one: Callable[[R], Awaitable[object]] | None,
    *,
    healthy: Probe | None,
    failed: Failed[R],
    what: str,
    poison: Callable[[Exception], BaseException] | None = None,
) -> T | None:
    """Handle ``records`` with ``handle_all()`` (which retries transient errors itself)
    and return its result; ``None`` when the records had to go one by one.

    When a transient error outlasts those retries, the dependency's ``healthy`` probe
    tells an outage (:class:`DependencyUnavailable` is raised: the records are rewound
    and come again once it is back) from a failure that belongs to the records. Then,
    with ``handle_one``, each record is handled on its own, in order, so one bad record
    never sinks the good ones, and only those that still fail go to ``failed`` (the
    verdict :class:`RetriesExhausted`); without it (one record per message) every record
    goes to ``failed`` at once. Without a ``healthy`` probe a transient error is always
    an outage (re-raised). With ``poison``, any other error of the batch also sends it
    one by one, and a record failing with one goes to ``failed`` as ``poison(error)``;
    without it, such errors propagate (the records are rewound)."""
    isolating = (Exception,) if poison is not None else TRANSIENT_ERRORS
    try:
        return await handle_all()
    except isolating as exc:
        transient = isinstance(exc, TRANSIENT_ERRORS)
        if transient:
            if healthy is None:
                raise
            verdict = await classify_transient(exc, healthy)
            if handle_one is None:
                for record in records:
                    await failed(record, verdict)
                return None
        if handle_one is None:
            raise
        logger.error(
            "%s %s (%s); handling its records one by one",
            what,
            "kept failing" if transient else "failed",
            type(exc).__name__,
        )
    await _one_by_one(records, handle_one, healthy=healthy, failed=failed, poison=poison)
    return None


async def _one_by_one(
    records: Iterable[R],
    handle_one: Callable[[R], Awaitable[object]],
    *,
    healthy: Probe | None,
    failed: Failed[R],
    poison: Callable[[Exception], BaseException] | None,
) -> None:
    for record in records:
        try:
            await handle_one(record)
        except TRANSIENT_ERRORS as exc:
            if healthy is None:
                raise
            await failed(record, await classify_transient(exc, healthy))
        except Exception as exc:
            if poison is None:
                raise
            await failed(record, poison(exc))


async def isolate(
    records: Iterable[Record],
    handle: Callable[[Record], Awaitable[object]],
    *,
    healthy: Probe,
    dead_letters: DeadLetterPublisher,
) -> int:
    """Handle ``records`` one at a time, in order (the second half of
    :func:`consume_policy`). A record that still fails transiently is dead-lettered as
    ``exhausted``; an outage raises :class:`DependencyUnavailable`. Returns how many
    were dead-lettered."""
    send = dead_letter_to(dead_letters)
    exhausted = 0

    async def count(record: Record, error: BaseException) -> None:
        nonlocal exhausted
        exhausted += 1
        await send(record, error)

    await _one_by_one(records, handle, healthy=healthy, failed=count, poison=None)
    return exhausted
