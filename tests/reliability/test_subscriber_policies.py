"""Delivery policy of every subscriber, and the consuming plumbing, without I/O.

* every subscriber of every service commits only after handling (no ACK_FIRST, no
  aiokafka auto-commit) and parses with the shared tolerant parser, whose messages
  commit exactly the offsets they carry;
* the tolerant parsers let any header bytes through to the handler, with the original
  record kept for the dead letter;
* after transient retries an outage is told apart from a record that keeps failing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from faststream import AckPolicy
from faststream._internal.context.repository import ContextRepo
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser, AioKafkaParser
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.middlewares import AcknowledgementMiddleware
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect

from shared.cloudevents import CloudEvent, EnvelopeError
from shared.consuming import (
    DependencyUnavailable,
    ExactCommitMessage,
    RetriesExhausted,
    classify_transient,
    isolate,
    offsets_to_commit,
    raw_body_decoder,
    tolerant_batch_parser,
    tolerant_parser,
)
from shared.contracts.enrolment import EnrolmentAccepted
from shared.contracts.registry import registry_for
from shared.dead_letters import DeadLetterPublisher
from shared.kafka import make_broker
from shared.service import Runtime
from shared.settings import ServiceSettings
from shared.telemetry import Telemetry
from shared.topics import ENROLMENT_EVENTS
from tests.factories.reporting import accepted


def _services() -> list[tuple[str, ServiceSettings, Callable[[Runtime], Any]]]:
    from services.enrolment.entrypoints import kafka as enrolment
    from services.enrolment.settings import EnrolmentSettings
    from services.matching.entrypoints import kafka as matching
    from services.matching.settings import MatchingSettings
    from services.reporting.entrypoints import kafka as reporting
    from services.reporting.settings import ReportingSettings

    return [
        ("enrolment", EnrolmentSettings(), enrolment.kafka_routers),
        ("matching", MatchingSettings(), matching.kafka_routers),
        ("reporting", ReportingSettings(), reporting.kafka_routers),
    ]


@pytest.fixture
async def brokers() -> AsyncIterator[dict[str, KafkaBroker]]:
    """Each service's broker with its Kafka routers included (nothing is started)."""
    built: dict[str, KafkaBroker] = {}
    runtimes: list[Runtime] = []
    for name, settings, routers in _services():
        telemetry = Telemetry(f"policy-{name}")
        broker = make_broker(settings, telemetry)
        runtime = Runtime(
            settings=settings,
            telemetry=telemetry,
            broker=broker,
            mongo=AsyncMongoClient(settings.mongodb_url.get_secret_value(), connect=False),
            dead_letters=DeadLetterPublisher(
                settings.kafka_bootstrap_servers, telemetry, settings.group_id
            ),
        )
        for router in routers(runtime):
            broker.include_router(router)
        built[name] = broker
        runtimes.append(runtime)
    yield built
    for runtime in runtimes:
        await runtime.mongo.close()


async def test_every_subscriber_commits_after_handling_with_the_tolerant_parser(
    brokers: dict[str, KafkaBroker],
) -> None:
    seen = 0
    for name, broker in brokers.items():
        assert broker.subscribers, f"{name} has no subscriber"
        for subscriber in broker.subscribers:
            assert isinstance(subscriber, LogicSubscriber)
            where = f"{name}: {subscriber.topic_names}"
            policy = subscriber.ack_policy
            assert policy is not AckPolicy.ACK_FIRST, f"{where} commits on receipt"
            # MANUAL would need an explicit ack in the handler; ours rely on the policy.
            assert policy is AckPolicy.NACK_ON_ERROR, f"{where}: {policy}"
            assert subscriber._connection_args["enable_auto_commit"] is False, where
            batch = getattr(subscriber, "max_records", None) is not None or type(
                subscriber
            ).__name__.startswith("Batch")
            expected = tolerant_batch_parser if batch else tolerant_parser
            assert subscriber._call_options.parser is expected, f"{where} parser"
            assert subscriber._call_options.decoder is raw_body_decoder, f"{where} decoder"
            seen += 1
    assert seen >= 3


def _record(
    offset: int,
    *,
    partition: int = 0,
    headers: list[tuple[str, bytes | None]] | None = None,
    topic: str = ENROLMENT_EVENTS,
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=headers if headers is not None else [("ce_id", b"x")],
    )


class FakeConsumer:
    def __init__(self, assigned: set[TopicPartition], fail: bool = False) -> None:
        self.assigned = assigned
        self.fail = fail
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        assert offsets is not None, "an argument-less commit would commit positions"
        if self.fail:
            raise CommitFailedError("rebalanced")
        self.commits.append(dict(offsets))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        raise AssertionError("not expected")


BINARY = [("ce_id", b"id-1"), ("x-vendor", b"\xff\xfe\x00"), ("x-null", None)]


async def test_single_parser_hands_binary_headers_through_and_commits_exactly() -> None:
    consumer = FakeConsumer({TopicPartition(ENROLMENT_EVENTS, 0)})
    parser = AioKafkaParser(msg_class=KafkaAckableMessage, regex=None)
    parser._setup(consumer)
    record = _record(41, headers=BINARY)
    with pytest.raises((UnicodeDecodeError, AttributeError)):
        await parser.parse_message(record)  # what FastStream alone does

    message = await tolerant_parser(record, parser.parse_message)
    assert isinstance(message, ExactCommitMessage)
    # The handler (and a dead letter) gets the same bytes; decoding them is lenient.
    raw = message.raw_message
    assert not isinstance(raw, tuple)
    assert raw.headers == [(k, v or b"") for k, v in BINARY]
    assert [getattr(v, "null", False) for _, v in raw.headers] == [0, 0, 1]
    assert message.headers["ce_id"] == "id-1"
    await parser.decode_message(message)  # FastStream's decoder parses headers again
    await message.ack()
    assert consumer.commits == [{TopicPartition(ENROLMENT_EVENTS, 0): 42}]
    await message.ack()  # once only
    assert len(consumer.commits) == 1


async def test_batch_parser_commits_only_its_own_offsets_on_partitions_still_owned() -> None:
    tp0, tp1, tp2 = (TopicPartition(ENROLMENT_EVENTS, p) for p in (0, 1, 2))
    consumer = FakeConsumer({tp0, tp2})  # partition 1 moved away mid-batch
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    parser._setup(consumer)
    records = (
        _record(5, partition=0),
        _record(6, partition=0, headers=BINARY),
        _record(9, partition=1),
        _record(3, partition=2),
    )
    message = await tolerant_batch_parser(records, parser.parse_batch)
    assert isinstance(message, ExactCommitMessage)
    assert [r.offset for r in message.raw_message] == [5, 6, 9, 3]
    assert message.raw_message[1].headers[1] == ("x-vendor", b"\xff\xfe\x00")
    await parser.decode_batch(message)  # FastStream's decoder parses headers again
    assert [h.get("x-vendor") for h in message.batch_headers] == [
        None,
        "\ufffd\ufffd\x00",
        None,
        None,
    ]
    await message.ack()
    assert consumer.commits == [{tp0: 7, tp2: 4}]
    assert offsets_to_commit(records) == {tp0: 7, tp1: 10, tp2: 4}


async def test_a_commit_refused_after_a_rebalance_is_not_an_error() -> None:
    consumer = FakeConsumer({TopicPartition(ENROLMENT_EVENTS, 0)}, fail=True)
    parser = AioKafkaParser(msg_class=KafkaAckableMessage, regex=None)
    parser._setup(consumer)
    message = await tolerant_parser(_record(1), parser.parse_message)
    await message.ack()  # logged; the records come again and are skipped as applied
    assert message.committed is not None


class SeekingConsumer(FakeConsumer):
    def __init__(self, assigned: set[TopicPartition]) -> None:
        super().__init__(assigned)
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


async def test_faststream_nack_on_error_acks_exactly_or_rewinds_every_partition() -> None:
    """What the consume policy relies on from FastStream, through FastStream's own
    acknowledgement middleware (as every subscriber is wired with NACK_ON_ERROR): a
    handler that returns commits exactly its records (our ``ack``); one that raises
    seeks every partition of the batch back to its earliest record (FastStream's
    ``nack``) and commits nothing. A FastStream upgrade that changes either fails here."""
    tp0, tp1 = (TopicPartition(ENROLMENT_EVENTS, p) for p in (0, 1))
    records = (_record(8, partition=0), _record(5, partition=1), _record(9, partition=0))
    acks = AcknowledgementMiddleware(
        logger=None,  # type: ignore[arg-type]  # FastStream's LoggerState; None logs nothing
        ack_policy=AckPolicy.NACK_ON_ERROR,
        fallback_parser=AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None).parse_batch,
    )

    async def handled(message: Any) -> None:
        return None

    async def failed(message: Any) -> None:
        raise DependencyUnavailable("database down")

    for handler, commits, seeks in (
        (handled, [{tp0: 10, tp1: 6}], []),
        (failed, [], [(tp0, 8), (tp1, 5)]),
    ):
        consumer = SeekingConsumer({tp0, tp1})
        parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
        parser._setup(consumer)
        message = await tolerant_batch_parser(records, parser.parse_batch)
        scope = acks(records, context=ContextRepo())
        try:
            async with scope:
                await scope.consume_scope(handler, message)
        except DependencyUnavailable:
            assert handler is failed
        assert consumer.commits == commits, handler.__name__
        assert sorted(consumer.seeks) == seeks, handler.__name__


def test_cloudevent_attributes_must_be_utf8_other_headers_need_not_be() -> None:
    registry = registry_for(ENROLMENT_EVENTS)
    event = CloudEvent(data=accepted(), source="/tests")
    headers: dict[str, Any] = {k: v.encode() for k, v in event.headers().items()}
    decoded = registry.decode(event.body(), {**headers, "x-vendor": b"\xff", "x-null": None})
    assert isinstance(decoded.data, EnrolmentAccepted)
    with pytest.raises(EnvelopeError, match="ce_type is not UTF-8"):
        registry.decode(event.body(), {**headers, "ce_type": b"\xffEnrolmentAccepted"})


@dataclasses.dataclass
class Letters:
    sent: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)

    async def send(self, record: Any, error: BaseException, *, kind: str) -> None:
        self.sent.append((record.offset, kind, type(error).__name__))


async def _up() -> bool:
    return True


async def _down() -> bool:
    raise AutoReconnect("connection refused")


async def test_after_retries_an_outage_waits_and_a_failing_record_is_dead_lettered() -> None:
    error = AutoReconnect("timed out")
    with pytest.raises(DependencyUnavailable):
        await classify_transient(error, _down)
    assert isinstance(await classify_transient(error, _up), RetriesExhausted)

    async def handle(record: Any) -> None:
        if record.offset == 2:
            raise AutoReconnect("this record's write keeps timing out")

    letters = Letters()
    records = [_record(n) for n in (1, 2, 3)]
    exhausted = await isolate(records, handle, healthy=_up, dead_letters=letters)  # type: ignore[arg-type]
    assert exhausted == 1
    assert letters.sent == [(2, "exhausted", "RetriesExhausted")]

    with pytest.raises(DependencyUnavailable):  # the database went away meanwhile
        await isolate(records, handle, healthy=_down, dead_letters=letters)  # type: ignore[arg-type]
