"""The foundation against the real broker and database: readiness, metrics, and an
event produced by an independent client (plain aiokafka) reaching the consumers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.enrolment.app import create_app as create_enrolment
from services.matching.app import create_app as create_matching
from services.reporting.app import create_app as create_reporting
from shared.cloudevents import CloudEvent
from shared.contracts.matching import MatchEnded
from shared.contracts.reference import CombinedAuthority
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES, dead_letter_topic
from tests.helpers import poll_until, running_app, unique
from tests.infra import Infra


def received(metrics_text: str, topic: str) -> float:
    """Records of ``topic`` the reporting projector applied. (FastStream's own received
    counter labels a whole batch with its first record's topic, so a batch that mixes
    both topics would hide this one.)"""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("reporting_events_applied_total{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_services_become_ready_and_expose_ops_endpoints(platform_env: Infra) -> None:
    for factory in (create_enrolment, create_matching, create_reporting):
        async with running_app(factory()) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"broker": True, "database": True}
            metrics = await client.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert 'http_requests_total{method="GET",route="/readyz",status="200"}' in metrics.text
            asyncapi = (await client.get("/asyncapi.json")).json()
            assert asyncapi["asyncapi"].startswith("3.")


async def test_event_from_independent_producer_is_consumed(platform_env: Infra) -> None:
    event = CloudEvent(
        data=MatchEnded(
            match_id=unique("match"),
            volunteer_id=unique("vol"),
            participant=unique("p"),
            combined_authority=CombinedAuthority.TEES_VALLEY,
            local_authority="E06000002",
            reason="completed the programme",
            meetings_count=10,
            ended_at=datetime.now(UTC),
        ),
        source="/tests/independent-producer",
    )
    async with running_app(create_reporting()) as client:
        before = received((await client.get("/metrics")).text, MATCHING_MATCHES)
        producer = AIOKafkaProducer(bootstrap_servers=platform_env.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                MATCHING_MATCHES,
                event.body(),
                key=b"E06000002",
                headers=[(k, v.encode()) for k, v in event.headers().items()],
            )
        finally:
            await producer.stop()

        async def seen() -> bool:
            return received((await client.get("/metrics")).text, MATCHING_MATCHES) > before

        await poll_until(seen, timeout_s=30, what="reporting to consume the event")


async def test_unparseable_record_goes_to_dead_letter_topic_with_coordinates(
    platform_env: Infra,
) -> None:
    marker = unique("poison").encode()
    async with running_app(create_matching()):
        producer = AIOKafkaProducer(bootstrap_servers=platform_env.kafka_bootstrap_servers)
        await producer.start()
        try:
            sent = await producer.send_and_wait(
                ENROLMENT_EVENTS,
                b"\x00not json " + marker,
                key=marker,
                headers=[("x-test", marker)],
            )
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            dead_letter_topic(ENROLMENT_EVENTS),
            bootstrap_servers=platform_env.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:

            async def dead_letter() -> dict[str, str] | None:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        if record.key == marker:
                            assert record.value == b"\x00not json " + marker
                            return {k: v.decode() for k, v in record.headers}
                return None

            headers = await poll_until(dead_letter, timeout_s=30, what="the dead letter")
        finally:
            await consumer.stop()
    assert headers["x-test"] == marker.decode()
    assert headers["dlq_original_topic"] == ENROLMENT_EVENTS
    assert headers["dlq_original_partition"] == str(sent.partition)
    assert headers["dlq_original_offset"] == str(sent.offset)
    assert headers["dlq_error_kind"] == "poison"
    assert "missing header" in headers["dlq_error"]
    assert not re.search(r"\d{4}-\d{2}-\d{2}", json.dumps(headers["dlq_error"]))
