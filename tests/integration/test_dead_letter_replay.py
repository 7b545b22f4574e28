"""ops.dlq against the real broker: a dead letter written by DeadLetterPublisher is
listed, inspected and re-published byte for byte to its original topic; --dry-run
sends nothing."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from ops.dlq import OpsSettings, read_dead_letters, replay, select
from shared.dead_letters import DeadLetterPublisher
from shared.kafka import ensure_topics
from shared.telemetry import Telemetry
from shared.topics import dead_letter_topic
from tests.helpers import unique
from tests.infra import Infra


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


async def read_all(
    bootstrap: str, topic: str
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return [
            (r.key, r.value or b"", dict(r.headers)) for records in batch.values() for r in records
        ]
    finally:
        await consumer.stop()


async def test_list_show_and_replay_dead_letters(platform_env: Infra) -> None:
    topic = unique("dlqtest")
    await ensure_topics(
        platform_env.kafka_bootstrap_servers, [topic, dead_letter_topic(topic)], partitions=1
    )
    settings = OpsSettings()
    publisher = DeadLetterPublisher(
        platform_env.kafka_bootstrap_servers, Telemetry("test"), "test-group"
    )
    await publisher.start()
    try:
        for offset, body in enumerate((b'{"broken": ', b'{"also": "bad"}')):
            await publisher.send(
                Record(topic, 0, offset, b"k%d" % offset, body, (("ce_id", b"id-%d" % offset),)),
                ValueError(f"bad record {offset}"),
                kind="poison",
            )
    finally:
        await publisher.stop()

    letters = await read_dead_letters(settings, topic)
    assert [d.address for d in letters] == ["0:0", "0:1"]
    summary = letters[0].summary()
    assert summary["original"] == f"{topic}[0]@0"
    assert summary["kind"] == "poison"
    assert summary["ce_id"] == "id-0"
    assert summary["error"] == "ValueError: bad record 0"

    chosen = select(letters, ["0:1"], take_all=False, error_contains=None)
    plan = await replay(settings, topic, chosen, dry_run=True)
    assert plan == [f"0:1 -> {topic} key=b'k1'"]
    assert await read_all(platform_env.kafka_bootstrap_servers, topic) == []

    await replay(settings, topic, chosen, dry_run=False)
    replayed = await read_all(platform_env.kafka_bootstrap_servers, topic)
    assert len(replayed) == 1
    key, value, headers = replayed[0]
    assert (key, value) == (b"k1", b'{"also": "bad"}')
    assert headers == {"ce_id": b"id-1", "dlq_replayed_from": b"0:1"}

    by_error = select(letters, [], take_all=True, error_contains="record 0")
    assert [d.address for d in by_error] == ["0:0"]
