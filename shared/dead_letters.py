"""Dead-letter plumbing: poison records go to ``<topic>.dlq`` with their original bytes,
key and headers untouched, plus headers naming the error and the original coordinates.

Poison (unparseable, schema-invalid, unknown type/version) goes at once; transient
failures are retried with capped exponential backoff first (:func:`retrying`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError
from faststream.security import BaseSecurity
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout

from shared.kafka import aiokafka_security_kwargs
from shared.telemetry import Telemetry
from shared.topics import dead_letter_topic

logger = logging.getLogger(__name__)

H_ERROR = "dlq_error"
H_ERROR_KIND = "dlq_error_kind"
H_TOPIC = "dlq_original_topic"
H_PARTITION = "dlq_original_partition"
H_OFFSET = "dlq_original_offset"
H_GROUP = "dlq_consumer_group"
H_FAILED_AT = "dlq_failed_at"
DLQ_HEADERS = (H_ERROR, H_ERROR_KIND, H_TOPIC, H_PARTITION, H_OFFSET, H_GROUP, H_FAILED_AT)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,  # includes AutoReconnect / NetworkTimeout / ServerSelectionTimeoutError
    AutoReconnect,
    NetworkTimeout,
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    TimeoutError,
    ConnectionError,
)


class RecordLike(Protocol):
    """The parts of an aiokafka ``ConsumerRecord`` a dead letter keeps."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class PoisonMessage(Exception):
    """A record that can never succeed as it is (retrying would not help)."""


class DeadLetterPublisher:
    """Publishes with a plain aiokafka producer rather than through FastStream, so the
    dead letter carries exactly the original headers (no added correlation or trace
    headers overwriting the original ones) plus the ``dlq_*`` headers."""

    def __init__(
        self,
        bootstrap_servers: str,
        telemetry: Telemetry,
        consumer_group: str,
        *,
        security: BaseSecurity | None = None,
    ) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{consumer_group}-dlq",
            acks="all",
            **aiokafka_security_kwargs(security),
        )
        self._started = False
        self._group = consumer_group
        self._count = telemetry.counter(
            "commonground_dead_letters_total",
            "Records sent to a dead-letter topic, by original topic and error kind.",
            ("topic", "kind"),
        )

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False

    async def send(self, record: RecordLike, error: BaseException, *, kind: str) -> None:
        """Publish ``record`` to its DLQ and wait for the broker's ack.
        ``kind`` is ``poison`` or ``exhausted``."""
        # Header values as received (a null value marked by the consuming parser stays
        # null), minus any dlq_* headers of an earlier dead-lettering.
        headers: list[tuple[str, bytes | None]] = [
            (k, None if v is None or getattr(v, "null", False) else bytes(v))
            for k, v in record.headers or ()
            if k not in DLQ_HEADERS
        ]
        extra = {
            # Exception text from our validators names fields, not input values.
            H_ERROR: f"{type(error).__name__}: {error}"[:2000],
            H_ERROR_KIND: kind,
            H_TOPIC: record.topic,
            H_PARTITION: str(record.partition),
            H_OFFSET: str(record.offset),
            H_GROUP: self._group,
            H_FAILED_AT: datetime.now(UTC).isoformat(),
        }
        headers.extend((k, v.encode()) for k, v in extra.items())
        await self._producer.send_and_wait(
            dead_letter_topic(record.topic), record.value or b"", key=record.key, headers=headers
        )
        self._count.labels(record.topic, kind).inc()
        logger.warning(
            "dead-lettered %s[%d]@%d (%s: %s)",
            record.topic,
            record.partition,
            record.offset,
            kind,
            type(error).__name__,
        )


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_delay_s: float = 0.2
    max_delay_s: float = 5.0
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        out, delay = [], self.initial_delay_s
        for _ in range(self.attempts - 1):
            out.append(min(delay, self.max_delay_s))
            delay *= self.multiplier
        return out


T = TypeVar("T")


async def retrying(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> T:
    """Run ``operation``, retrying transient errors with capped exponential backoff.
    The last transient error is re-raised once the attempts are used up."""
    for delay in [*policy.delays(), None]:
        try:
            return await operation()
        except transient as exc:
            if delay is None:
                raise
            logger.info("transient %s, retrying in %.2fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
