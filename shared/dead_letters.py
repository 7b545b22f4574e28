"""Dead-letter plumbing: poison records go to ``<topic>.dlq`` with their original bytes,
key and headers untouched, plus headers naming the error and the original coordinates.

Poison (unparseable, schema-invalid, unknown type/version) goes at once; transient
failures are retried with capped exponential backoff first (:func:`shared.retries.retrying`).

A dead letter never fails on size: when the record (plus the ``dlq_*`` headers) would
exceed the producer's maximum request size, a *bounded* dead letter is sent instead. It
carries the original coordinates and error as usual, the sha256 digest and length of the
original value and key (``dlq_value_sha256`` / ``dlq_value_length`` / ``dlq_key_sha256``
/ ``dlq_key_length``), as much of the original as fits (a small key whole, prefixes of
the rest; the original headers only if they are small), and ``dlq_truncated`` naming
what was cut. ``ops.dlq`` refuses to replay a truncated letter: its bytes are not the
original's.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.security import BaseSecurity

from shared.kafka import aiokafka_security_kwargs
from shared.retries import TRANSIENT_ERRORS as TRANSIENT_ERRORS  # re-exported
from shared.retries import RetryPolicy as RetryPolicy  # re-exported
from shared.retries import retrying as retrying  # re-exported
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
H_TRUNCATED = "dlq_truncated"  # comma-separated parts cut: value, key, headers
H_VALUE_SHA256 = "dlq_value_sha256"
H_VALUE_LENGTH = "dlq_value_length"
H_KEY_SHA256 = "dlq_key_sha256"
H_KEY_LENGTH = "dlq_key_length"
DLQ_HEADERS = (
    H_ERROR,
    H_ERROR_KIND,
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_GROUP,
    H_FAILED_AT,
    H_TRUNCATED,
    H_VALUE_SHA256,
    H_VALUE_LENGTH,
    H_KEY_SHA256,
    H_KEY_LENGTH,
)

KAFKA_DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
# Room kept below the limit for the request's own framing (aiokafka's estimate covers
# the record batch; the produce request adds topic name, partition and a few ints).
_REQUEST_OVERHEAD = 4096
# Original headers are kept on a bounded dead letter only up to this total size.
_MAX_KEPT_HEADER_BYTES = 16 * 1024
_TOO_LARGE: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

Headers = list[tuple[str, bytes | None]]


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


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Upper bound of one record's size in a produce request (as aiokafka checks it)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def _digest(data: bytes | None) -> tuple[str, str]:
    data = data or b""
    return hashlib.sha256(data).hexdigest(), str(len(data))


def _headers_size(headers: Headers) -> int:
    return sum(len(k.encode()) + len(v or b"") for k, v in headers)


def bounded_letter(
    key: bytes | None,
    value: bytes | None,
    original_headers: Headers,
    dlq_headers: Headers,
    *,
    max_request_bytes: int,
    keep_originals: bool = True,
) -> tuple[bytes | None, bytes, Headers, list[str]]:
    """The dead letter to send: (key, value, headers, parts cut).

    Unchanged when it fits in ``max_request_bytes``; otherwise the original's digests and
    lengths are added and as much of the value and key as still fits is kept (a small
    key whole, a prefix of the rest); ``keep_originals=False`` keeps none of them nor
    the original headers (the last resort)."""
    value = value or b""
    whole: Headers = [*original_headers, *dlq_headers]
    budget = max_request_bytes - _REQUEST_OVERHEAD
    if keep_originals and record_size(key, value, whole) <= budget:
        return key, value, whole, []
    cut: list[str] = []
    kept_headers = original_headers
    if not keep_originals or _headers_size(original_headers) > _MAX_KEPT_HEADER_BYTES:
        kept_headers = []
        if original_headers:
            cut.append("headers")
    value_sha, value_length = _digest(value)
    key_sha, key_length = _digest(key)
    headers: Headers = [
        *kept_headers,
        *dlq_headers,
        (H_VALUE_SHA256, value_sha.encode()),
        (H_VALUE_LENGTH, value_length.encode()),
        (H_KEY_SHA256, key_sha.encode()),
        (H_KEY_LENGTH, key_length.encode()),
        (H_TRUNCATED, b"value,key,headers"),  # placeholder of the final size
    ]
    room = max(budget - record_size(None, b"", headers), 0)
    kept_key: bytes | None = None
    kept_value = b""
    if keep_originals:
        # A small key (a UKPRN, a learner pseudonym) is kept whole; a large one shares
        # the room with the value.
        key_len = len(key or b"")
        key_room = key_len if key_len <= room // 2 else max(room - len(value), room // 2)
        kept_key = None if key is None else key[:key_room]
        kept_value = value[: room - len(kept_key or b"")]
    if len(kept_value) < len(value):
        cut.insert(0, "value")
    if key is not None and (kept_key is None or len(kept_key) < len(key)):
        cut.insert(1 if "value" in cut else 0, "key")
    headers[-1] = (H_TRUNCATED, ",".join(cut).encode())
    return kept_key, kept_value, headers, cut


class DeadLetterPublisher:
    """Publishes with a plain aiokafka producer rather than through FastStream, so the
    dead letter carries exactly the original headers (no added correlation or trace
    headers overwriting the original ones) plus the ``dlq_*`` headers.

    ``max_request_bytes`` is the producer's maximum request size (Kafka's default,
    1 MiB): a record too large to dead-letter whole is dead-lettered bounded (see the
    module docstring), so dead-lettering never fails on size."""

    def __init__(
        self,
        bootstrap_servers: str,
        telemetry: Telemetry,
        consumer_group: str,
        *,
        security: BaseSecurity | None = None,
        max_request_bytes: int = KAFKA_DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{consumer_group}-dlq",
            acks="all",
            max_request_size=max_request_bytes,
            **aiokafka_security_kwargs(security),
        )
        self._max_request_bytes = max_request_bytes
        self._started = False
        self._group = consumer_group
        self._count = telemetry.counter(
            "commonground_dead_letters_total",
            "Records sent to a dead-letter topic, by original topic, error kind and reason "
            "(whole: the original bytes kept; oversized: too large, sent bounded with "
            "digests, see dlq_truncated).",
            ("topic", "kind", "reason"),
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
        originals: Headers = [
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
        dlq_headers: Headers = [(k, v.encode()) for k, v in extra.items()]
        topic = dead_letter_topic(record.topic)
        key, value, headers, cut = bounded_letter(
            record.key,
            record.value,
            originals,
            dlq_headers,
            max_request_bytes=self._max_request_bytes,
        )
        try:
            await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except _TOO_LARGE as exc:
            # The broker's limit is below ours (message.max.bytes / max.message.bytes):
            # keep nothing of the original but its digests and coordinates.
            logger.error(
                "dead-letter producer of %s: broker refused %s[%d]@%d as too large (%s); "
                "sending it without its bytes",
                self._group,
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
            )
            key, value, headers, cut = bounded_letter(
                record.key,
                record.value,
                originals,
                dlq_headers,
                max_request_bytes=self._max_request_bytes,
                keep_originals=False,
            )
            await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        reason = "oversized" if cut else "whole"
        self._count.labels(record.topic, kind, reason).inc()
        if cut:
            logger.error(
                "dead-letter producer of %s: %s[%d]@%d is too large to dead-letter whole "
                "(value %d bytes, key %d bytes, limit %d); sent bounded to %s with sha256 "
                "digests, cut: %s (%s: %s)",
                self._group,
                record.topic,
                record.partition,
                record.offset,
                len(record.value or b""),
                len(record.key or b""),
                self._max_request_bytes,
                topic,
                ",".join(cut),
                kind,
                type(error).__name__,
            )
            return
        logger.warning(
            "dead-lettered %s[%d]@%d (%s: %s)",
            record.topic,
            record.partition,
            record.offset,
            kind,
            type(error).__name__,
        )
