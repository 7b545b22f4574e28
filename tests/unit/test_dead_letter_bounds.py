"""Bounded dead letters: a record too large to dead-letter whole still fits a request."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka import ConsumerRecord

from services.enrolment.entrypoints.kafka import MAX_INBOUND_KEY_BYTES, decode_inbound
from shared.dead_letters import (
    H_KEY_LENGTH,
    H_KEY_SHA256,
    H_TRUNCATED,
    H_VALUE_LENGTH,
    H_VALUE_SHA256,
    KAFKA_DEFAULT_MAX_REQUEST_BYTES,
    Headers,
    PoisonMessage,
    bounded_letter,
    record_size,
)

LIMIT = KAFKA_DEFAULT_MAX_REQUEST_BYTES
DLQ: Headers = [("dlq_error", b"PoisonMessage: too large"), ("dlq_original_offset", b"7")]


def _h(headers: Headers, name: str) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


def test_a_record_that_fits_is_kept_whole() -> None:
    key, value, headers, cut = bounded_letter(
        b"10004927", b"{}", [("ce_id", b"x")], DLQ, max_request_bytes=LIMIT
    )
    assert (key, value, cut) == (b"10004927", b"{}", [])
    assert headers == [("ce_id", b"x"), *DLQ]


@pytest.mark.parametrize(
    ("key_size", "value_size", "header_size"),
    [(8, 3 * LIMIT // 2, 10), (8, 5 * LIMIT, 10), (700_000, 700_000, 10), (8, 10, 2 * LIMIT)],
)
def test_an_oversized_record_is_bounded_with_digests(
    key_size: int, value_size: int, header_size: int
) -> None:
    original_key, original_value = b"k" * key_size, b"v" * value_size
    originals: Headers = [("x-big", b"h" * header_size)]
    key, value, headers, cut = bounded_letter(
        original_key, original_value, originals, DLQ, max_request_bytes=LIMIT
    )
    assert record_size(key, value, headers) <= LIMIT
    assert cut and _h(headers, H_TRUNCATED) == ",".join(cut).encode()
    assert _h(headers, H_VALUE_SHA256) == hashlib.sha256(original_value).hexdigest().encode()
    assert _h(headers, H_VALUE_LENGTH) == str(value_size).encode()
    assert _h(headers, H_KEY_SHA256) == hashlib.sha256(original_key).hexdigest().encode()
    assert _h(headers, H_KEY_LENGTH) == str(key_size).encode()
    assert original_value.startswith(value) and original_key.startswith(key or b"")
    assert all(h in headers for h in DLQ)
    if key_size <= 8:
        assert key == original_key  # a small key is kept whole
    if header_size > LIMIT:
        assert "headers" in cut and ("x-big", originals[0][1]) not in headers


def test_last_resort_keeps_nothing_of_the_original() -> None:
    key, value, headers, cut = bounded_letter(
        b"k" * 100, b"v" * 100, [("a", b"b")], DLQ, max_request_bytes=LIMIT, keep_originals=False
    )
    assert (key, value) == (None, b"")
    assert cut == ["value", "key", "headers"]
    assert _h(headers, H_VALUE_LENGTH) == b"100"


def _record(key: bytes | None, value: bytes, headers: Headers) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="enrolment.inbound.v1",
        partition=0,
        offset=1,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=headers,
    )


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (b"1" * (MAX_INBOUND_KEY_BYTES + 1), b"{}", []),
        (b"10004927", b"{}", [("ce_id", b"i" * 300_000)]),
        (b"10004927", b" " * (64 * 1024 + 1), []),
    ],
)
def test_intake_dead_letters_what_a_refusal_could_not_echo(
    key: bytes, value: bytes, headers: Headers
) -> None:
    with pytest.raises(PoisonMessage, match="too large"):
        decode_inbound(_record(key, value, headers), max_value_bytes=64 * 1024)
