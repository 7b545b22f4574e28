"""The shared outbox relay (shared/outbox.py) against an in-memory store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import replace

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata, TopicPartition

from shared import topics
from shared.contracts.registry import registry_for
from shared.outbox import (
    Delivered,
    OutboxMessage,
    OutboxRelay,
    OutboxRow,
    OutboxSettings,
    RelayMetrics,
    UnpublishableMessage,
    contract_publisher,
)
from shared.telemetry import Telemetry
from tests.factories.reporting import accepted, cloud
from tests.unit.outbox_fakes import FakeOutboxStore, ScriptedLogCheck


def _message(i: int, key: str) -> OutboxMessage:
    return OutboxMessage(id=f"m-{i}", topic=topics.ENROLMENT_EVENTS, key=key, headers={}, body="{}")


class Broker:
    """Partition = hash of the key over 2 partitions; offsets count up per partition."""

    def __init__(self) -> None:
        self.log: dict[int, list[str]] = {0: [], 1: []}
        self.fail: dict[str, BaseException] = {}

    async def publish(self, message: OutboxMessage) -> Delivered:
        await asyncio.sleep(0)
        if message.id in self.fail:
            raise self.fail[message.id]
        partition = sum(message.key.encode()) % 2
        self.log[partition].append(message.id)
        return Delivered(partition, len(self.log[partition]) - 1)

    def published(self) -> list[str]:
        return sorted(itertools.chain(*self.log.values()))


def _relay(
    store: FakeOutboxStore,
    broker: Broker,
    batch_size: int = 100,
    log_check: ScriptedLogCheck | None = None,
) -> tuple[OutboxRelay, Telemetry]:
    telemetry = Telemetry(service_name="relay-unit")
    settings = OutboxSettings(
        outbox_batch_size=batch_size,
        outbox_poll_interval_s=0.01,
        outbox_max_attempts=3,
        outbox_log_check_interval_s=0,
    )
    relay = OutboxRelay(
        store,
        broker.publish,
        settings,
        RelayMetrics(telemetry),
        log_check=log_check,
        component="unit",
    )
    return relay, telemetry


def _value(telemetry: Telemetry, name: str, **labels: str) -> float:
    value = telemetry.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_relay_keeps_per_key_order_and_marks_only_fully_sent_rows() -> None:
    rows = [
        OutboxRow("r1", 1, (_message(1, "a"), _message(2, "b"))),
        OutboxRow("r2", 2, (_message(3, "a"),)),
        OutboxRow("r3", 3, (_message(4, "c"),)),
        OutboxRow("r4", 4, (_message(5, "a"), _message(6, "d"))),
    ]
    store = FakeOutboxStore(rows)
    broker = Broker()
    broker.fail["m-3"] = KafkaConnectionError("broker gone")
    relay, _ = _relay(store, broker)
    with pytest.raises(KafkaConnectionError):
        await relay.run_once()
    # m-3 failed: m-5 (same key, later) waits; other keys went out. Rows r2 and r4 stay
    # pending and go again whole (same ce_ids) in a later round; an outage is not
    # counted against the rows.
    assert broker.published() == ["m-1", "m-2", "m-4", "m-6"]
    assert sorted(store.sent) == ["r1", "r3"]
    assert all(r.attempts == 0 for r in store.rows)
    assert await relay.refresh_backlog() == 3


async def test_an_unpublishable_event_is_parked_and_does_not_stall_the_relay() -> None:
    rows = [
        OutboxRow("r1", 1, (_message(1, "a"), _message(2, "a"))),
        OutboxRow("r2", 2, (_message(3, "a"),)),
    ]
    store = FakeOutboxStore(rows)
    broker = Broker()
    broker.fail["m-1"] = UnpublishableMessage("does not match its schema")
    relay, telemetry = _relay(store, broker)
    assert await relay.run_once() == 2
    assert broker.published() == ["m-2", "m-3"]
    assert store.parked == {"r1": [("m-1", "invalid")]}
    assert sorted(store.sent) == ["r1", "r2"]
    assert await relay.run_once() == 0
    assert _value(telemetry, "commonground_outbox_parked_total", reason="invalid") == 1


async def test_an_oversized_event_is_parked_at_once_and_the_others_flow() -> None:
    rows = [OutboxRow(f"r{i}", i, (_message(i, f"k{i % 3}"),)) for i in range(9)]
    store = FakeOutboxStore(rows)
    broker = Broker()
    broker.fail["m-4"] = MessageSizeTooLargeError()
    relay, telemetry = _relay(store, broker)
    assert await relay.run_once() == 8
    assert "m-4" not in broker.published() and len(broker.published()) == 8
    assert store.parked == {"r4": [("m-4", "too_large")]}
    assert await relay.refresh_backlog() == 0
    assert _value(telemetry, "commonground_outbox_parked_total", reason="too_large") == 1


async def test_a_message_that_keeps_failing_is_parked_after_the_bounded_tries() -> None:
    store = FakeOutboxStore(
        [OutboxRow("r1", 1, (_message(1, "a"),)), OutboxRow("r2", 2, (_message(2, "b"),))]
    )
    broker = Broker()
    broker.fail["m-1"] = ValueError("refused")
    relay, telemetry = _relay(store, broker)
    for _ in range(2):  # max_attempts = 3
        with pytest.raises(ValueError):
            await relay.run_once()
    assert await relay.run_once() == 0
    assert store.parked == {"r1": [("m-1", "failed")]}
    assert broker.published() == ["m-2"]
    assert await relay.refresh_backlog() == 0
    assert _value(telemetry, "commonground_outbox_parked_total", reason="failed") == 1


async def test_a_lost_log_is_republished_from_the_outbox_ahead_of_newer_events() -> None:
    store = FakeOutboxStore([OutboxRow(f"r{i}", i, (_message(i, f"k{i}"),)) for i in range(6)])
    broker = Broker()
    check = ScriptedLogCheck()
    relay, telemetry = _relay(store, broker, log_check=check)
    assert await relay.run_once() == 6
    assert len(store.anchor_by_tp) == 2

    # The broker loses its log; new events are committed meanwhile.
    broker.log = {0: [], 1: []}
    check.lost = {(topics.ENROLMENT_EVENTS, 0), (topics.ENROLMENT_EVENTS, 1)}
    store.rows.append(OutboxRow("r9", 9, (_message(9, "k1"),)))
    assert await relay.run_once() == 7
    # Everything sent into the lost log went again, in the original order per key,
    # before the newer event on the same key.
    assert broker.published() == sorted(f"m-{i}" for i in (*range(6), 9))
    k1 = [m for m in broker.log[sum(b"k1") % 2] if m in ("m-1", "m-9")]
    assert k1 == ["m-1", "m-9"]
    assert store.requeued == 6
    resets = sum(
        _value(
            telemetry,
            "commonground_log_resets_detected_total",
            component="unit",
            topic=topics.ENROLMENT_EVENTS,
            partition=str(p),
        )
        for p in (0, 1)
    )
    assert resets == 2
    assert _value(telemetry, "commonground_outbox_requeued_total") == 6


async def test_the_backlog_gauge_stays_true_when_rounds_fail() -> None:
    store = FakeOutboxStore([OutboxRow(f"r{i}", i, (_message(i, "a"),)) for i in range(4)])
    broker = Broker()
    broker.fail["m-0"] = KafkaConnectionError("down")
    relay, telemetry = _relay(store, broker)
    relay.start()
    try:
        for _ in range(200):
            if _value(telemetry, "commonground_outbox_backlog") == 4:
                break
            await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    assert _value(telemetry, "commonground_outbox_backlog") == 4


async def test_relay_publishes_in_rounds_and_drains() -> None:
    rows = [
        OutboxRow(f"r{i}", i, tuple(_message(i * 10 + j, f"k{j}") for j in range(5)))
        for i in range(12)
    ]
    store = FakeOutboxStore(rows)
    broker = Broker()
    relay, _ = _relay(store, broker, batch_size=20)
    assert await relay.run_once() == 20  # four rows of five
    relay.start()
    try:
        for _ in range(200):
            if len(store.sent) == 12:
                break
            await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    assert len(store.sent) == 12 and len(broker.published()) == 60
    assert store.lease_owner is None  # released on stop


async def test_a_lower_offset_than_recorded_reveals_a_replaced_log_between_checks() -> None:
    # The topic was re-created (and auto-created again by the next publish) after the
    # last check: the broker's answer itself shows it, and what went into the old log
    # is published again.
    store = FakeOutboxStore([OutboxRow(f"r{i}", i, (_message(i, "k"),)) for i in range(4)])
    broker = Broker()
    check = ScriptedLogCheck()  # finds nothing: the new log already has records
    relay, telemetry = _relay(store, broker, log_check=check)
    assert await relay.run_once() == 4
    broker.log = {0: [], 1: []}
    store.rows.append(OutboxRow("r9", 9, (_message(9, "k"),)))
    assert await relay.run_once() == 1
    assert store.requeued == 5  # the old log's four and the one just sent
    assert await relay.run_once() == 5
    partition = sum(b"k") % 2
    assert broker.log[partition] == ["m-9", "m-0", "m-1", "m-2", "m-3", "m-9"]
    labels = {"component": "unit", "topic": topics.ENROLMENT_EVENTS, "partition": str(partition)}
    assert _value(telemetry, "commonground_log_resets_detected_total", **labels) == 1


class Sink:
    """Records what the relay's publisher hands to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str, dict[str, str]]] = []

    async def send(
        self, topic: str, value: bytes, *, key: str, headers: Mapping[str, str]
    ) -> RecordMetadata:
        self.sent.append((topic, value, key, dict(headers)))
        return RecordMetadata(topic, 2, TopicPartition(topic, 2), 41, -1, 0, 0)


async def test_the_publisher_sends_the_stored_event_as_stored_once_it_validates() -> None:
    sink = Sink()
    publish = contract_publisher(sink, registry_for(topics.ENROLMENT_EVENTS))
    stored = OutboxMessage.of(cloud(accepted()), topic=topics.ENROLMENT_EVENTS, key="learner-1")
    assert await publish(stored) == Delivered(partition=2, offset=41)
    # The stored bytes and headers, not a second serialisation (ce_id fixed at write time).
    assert sink.sent == [
        (topics.ENROLMENT_EVENTS, stored.body.encode(), "learner-1", stored.headers)
    ]

    broken = replace(stored, id="m-broken", body=stored.body.replace('"enrolment_id"', '"x"'))
    with pytest.raises(UnpublishableMessage, match="does not decode as its contract"):
        await publish(broken)
    assert len(sink.sent) == 1  # never sent
