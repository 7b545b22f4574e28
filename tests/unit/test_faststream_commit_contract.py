"""What ``shared.consuming.ExactCommitMessage`` relies on in FastStream, pinned fast.

The exact-offset commit is not a library's: FastStream's ``KafkaAckableMessage.ack``
commits the consumer's *position* (``consumer.commit()`` without arguments). Ours
subclasses it, and the tolerant parsers swap the class of the message FastStream's
parser made, which only happens when that message is exactly ``KafkaAckableMessage``.
A FastStream upgrade that gives NACK_ON_ERROR subscribers another message class, moves
the commit into a base class's ``ack``, or makes messages uncopyable by ``__dict__``
would silently bring back commits past unhandled records: these tests fail instead.
(tests/reliability/test_subscriber_policies.py drives the same plumbing through
FastStream's acknowledgement middleware, and checks every service's subscribers.)
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaAckableMessage, KafkaMessage
from faststream.message import StreamMessage

from shared.consuming import (
    ExactCommitMessage,
    raw_body_decoder,
    tolerant_batch_parser,
    tolerant_parser,
)

TOPIC = "contract.events.v1"


def _record(offset: int, partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=[("ce_id", b"x")],
    )


class Consumer:
    """The two calls an ack and a nack make on aiokafka's consumer, recorded."""

    def __init__(self, *partitions: int) -> None:
        self.owned = {TopicPartition(TOPIC, p) for p in partitions}
        self.commits: list[dict[TopicPartition, int] | None] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self.commits.append(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


def _faststream_parser(*, batch: bool, consumer: Consumer) -> Any:
    """The parser FastStream itself builds for a subscriber declared as ours are."""
    broker = KafkaBroker()
    subscriber = broker.subscriber(
        TOPIC,
        group_id="contract",
        batch=batch,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser if batch else tolerant_parser,
        decoder=raw_body_decoder,
    )
    parser = subscriber.parser
    assert parser.msg_class is KafkaAckableMessage, "the class _exact swaps"
    parser._setup(consumer)
    return parser


async def test_a_nack_on_error_subscribers_messages_become_exact_commit_messages() -> None:
    consumer = Consumer(0)
    parser = _faststream_parser(batch=False, consumer=consumer)
    message: StreamMessage[Any] = await tolerant_parser(_record(41), parser.parse_message)
    assert type(message) is ExactCommitMessage
    await message.ack()
    await message.ack()  # FastStream's StreamMessage.ack marks it committed: once only
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 42}]


async def test_batch_messages_too_and_nack_still_rewinds_every_partition() -> None:
    consumer = Consumer(0, 1)
    parser = _faststream_parser(batch=True, consumer=consumer)
    records = (_record(5), _record(9, partition=1), _record(6))
    message = await tolerant_batch_parser(records, parser.parse_batch)
    assert type(message) is ExactCommitMessage
    assert message.raw_message == records  # the copy kept FastStream's state
    await message.nack()  # inherited from FastStream, unchanged
    assert sorted(consumer.seeks) == [(TopicPartition(TOPIC, 0), 5), (TopicPartition(TOPIC, 1), 9)]
    assert consumer.commits == []


async def test_faststreams_own_ack_is_what_we_replace_and_its_base_ack_commits_nothing() -> None:
    """``ExactCommitMessage.ack`` skips ``KafkaAckableMessage.ack`` (argument-less commit)
    and calls the next ``ack`` up, which must only mark the message as committed. (Should
    FastStream's own ack commit exact offsets one day, the first assertion fails, and
    ExactCommitMessage may be able to go.)"""
    consumer = Consumer(0)
    plain = KafkaAckableMessage(raw_message=_record(1), body=b"", consumer=consumer)
    await plain.ack()
    assert consumer.commits == [None], "FastStream's ack commits positions"
    assert ExactCommitMessage.__mro__[1:3] == (KafkaAckableMessage, KafkaMessage)
    consumer.commits.clear()
    base = KafkaAckableMessage(raw_message=_record(1), body=b"", consumer=consumer)
    await super(KafkaAckableMessage, base).ack()
    assert consumer.commits == [] and base.committed
