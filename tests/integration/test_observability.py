"""Ops observability against real traffic on the real broker and database:

- every service's /metrics passes ``promtool check metrics`` and carries the business
  metrics ops and coordinators ask about, with no personal value in any label;
- structured JSON log lines carry trace ids, and no distinctive personal value from a
  submission appears in any log line of any service.
"""

from __future__ import annotations

import json
import logging
import random
import re
import string
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app as create_enrolment
from services.enrolment.settings import EnrolmentSettings
from services.matching.app import create_app as create_matching
from services.matching.settings import MatchingSettings
from services.reporting.app import create_app as create_reporting
from services.reporting.settings import ReportingSettings
from shared.settings import ServiceSettings
from shared.telemetry import configure_logging
from tests.conftest import require_tool
from tests.helpers import poll_until, running_app, send_signed, unique
from tests.infra import Infra


class InfraSettings(TypedDict):
    """The settings every service here shares, typed so ``**common`` checks."""

    kafka_bootstrap_servers: str
    mongodb_url: str
    log_level: str


# Distinctive personal values: none of them may ever reach a log line.
DISTINCT = {
    "learner_ref": "QX" + "".join(random.choices(string.digits, k=10)),
    "given_names": "Perpetua" + "".join(random.choices(string.ascii_lowercase, k=6)),
    "family_name": "Okonkwo" + "".join(random.choices(string.ascii_lowercase, k=6)),
    "postcode": "M16 " + str(random.randint(1, 9)) + "QZ",
    "date_of_birth": f"1977-0{random.randint(1, 9)}-{random.randint(10, 28)}",
}


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Observed:
    clients: dict[str, httpx.AsyncClient]
    logs: ListHandler
    metrics: dict[str, str] = field(default_factory=dict)


def submission(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "submission_ref": unique("row"),
        **DISTINCT,
        "sex": "F",
        "ethnicity": "white_roma",
        "religion": "christian",
        "country_of_birth": "RO",
        "first_language": "ro",
        "year_of_arrival": 2019,
        "combined_authority": "E47000001",
        "local_authority": "E08000003",
        "learning_aim_ref": "ZESOL002",
        "programme": "esol",
        "level": "entry_3",
        "start_date": "2026-02-02",
        "planned_end_date": "2026-07-17",
        "planned_hours": 90,
        "fund_model": 35,
        "consent": {"matching": True, "research": False},
        "wants_conversation_partner": True,
        "availability": ["mon-pm"],
        "interests": ["cooking"],
    }
    doc.update(overrides)
    return doc


@pytest_asyncio.fixture(scope="module")
async def observed(infra: Infra) -> AsyncIterator[Observed]:
    common: InfraSettings = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap_servers,
        "mongodb_url": infra.mongodb_url,
        "log_level": "DEBUG",
    }
    # The real JSON logging set-up, capturing every line of every logger.
    configure_logging(ServiceSettings(**common))
    handler = ListHandler()
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    handler.addFilter(logging.getLogger().handlers[0].filters[0])
    logging.getLogger().addHandler(handler)
    apps = {
        "enrolment": create_enrolment(
            EnrolmentSettings(
                **common,
                consumer_group=unique("obs-enrolment"),
                mongodb_database=unique("obs_enrolment"),
            )
        ),
        "matching": create_matching(
            MatchingSettings(
                **common,
                consumer_group=unique("obs-matching"),
                mongodb_database=unique("obs_matching"),
            )
        ),
        "reporting": create_reporting(
            ReportingSettings(
                **common,
                consumer_group=unique("obs-reporting"),
                mongodb_database=unique("obs_reporting"),
            )
        ),
    }
    try:
        async with AsyncExitStack() as stack:
            clients = {n: await stack.enter_async_context(running_app(a)) for n, a in apps.items()}
            admin = ProviderAdmin(apps["enrolment"].state.runtime.db)
            ukprn = "1" + "".join(random.choices(string.digits, k=7))
            key = await admin.register_provider("Observed College", ukprn, ["E47000001"])
            auth = {"Authorization": f"Bearer {key}"}
            enrolments = clients["enrolment"]
            accepted = await enrolments.post("/v1/enrolments", json=submission(), headers=auth)
            assert accepted.status_code == 201, accepted.text
            # Refused: borough outside the stated authority; a wrong key; a bad batch item.
            refused = await enrolments.post(
                "/v1/enrolments", json=submission(local_authority="E08000025"), headers=auth
            )
            assert refused.status_code == 422
            assert (
                await enrolments.get(
                    "/v1/enrolments/x", headers={"Authorization": "Bearer " + DISTINCT["postcode"]}
                )
            ).status_code == 401
            batch = await enrolments.post(
                "/v1/enrolments/batch",
                json={"items": [submission(submission_ref=unique("b")), submission(level="nope")]},
                headers=auth,
            )
            assert batch.status_code == 200, batch.text
            # Kafka intake: one valid-looking but refused submission, one unparseable record.
            producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
            await producer.start()
            try:
                bad = submission(submission_ref=unique("k"), programme="astrology")
                await send_signed(producer, key, ukprn, json.dumps(bad).encode())
                await send_signed(producer, key, ukprn, b"{" + DISTINCT["family_name"].encode())
            finally:
                await producer.stop()
            observed = Observed(clients, handler)

            async def traffic_seen() -> bool:
                text = (await enrolments.get("/metrics")).text
                return "commonground_dead_letters_total{" in text and (
                    "commonground_enrolments_rejected_total{" in text
                )

            await poll_until(traffic_seen, timeout_s=40, what="intake metrics after traffic")

            async def consumed() -> bool:
                text = (await clients["reporting"].get("/metrics")).text
                return "reporting_events_applied_total{" in text

            await poll_until(consumed, timeout_s=60, what="reporting to consume the events")
            for name, client in clients.items():
                observed.metrics[name] = (await client.get("/metrics")).text
            yield observed
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("service", ["enrolment", "matching", "reporting"])
def test_metrics_pass_promtool_check(observed: Observed, service: str) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=observed.metrics[service],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # promtool exits 0 when clean; lint warnings go to stdout/stderr with exit 3.
    assert result.returncode == 0, result.stdout + result.stderr


def test_business_and_platform_metrics_are_exported(observed: Observed) -> None:
    enrolment = observed.metrics["enrolment"]
    assert re.search(
        r'^commonground_enrolments_accepted_total\{channel="http",combined_authority="E47000001"',
        enrolment,
        re.M,
    )
    assert "commonground_enrolments_rejected_total{" in enrolment
    assert 'http_requests_total{method="POST",route="/v1/enrolments",status="201"}' in enrolment
    assert "http_request_duration_seconds_bucket{" in enrolment
    assert (
        'commonground_dead_letters_total{kind="poison",reason="whole",topic="enrolment.inbound.v1"}'
        in enrolment
    )
    assert "commonground_outbox_backlog" in enrolment
    for service in ("enrolment", "matching", "reporting"):
        text = observed.metrics[service]
        assert "faststream_received_messages_total{" in text, service
        assert "commonground_consumer_lag{" in text, service
    assert "matching_pool_size{" in observed.metrics["matching"]
    assert "reporting_projection_batch_size_bucket{" in observed.metrics["reporting"]


def test_no_label_carries_a_personal_value_or_key(observed: Observed) -> None:
    for service, text in observed.metrics.items():
        for value in DISTINCT.values():
            assert value not in text, (service, value)
        assert "Bearer" not in text and "cg_" not in text, service


def test_log_lines_are_json_with_trace_ids_and_hold_no_personal_data(observed: Observed) -> None:
    lines = observed.logs.lines
    assert len(lines) > 20
    parsed = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message", "trace_id"} <= set(p) for p in parsed)
    # Lines logged while handling a request or a message carry its trace id.
    assert any(len(p["trace_id"]) == 32 for p in parsed)
    for line in lines:
        for name, value in DISTINCT.items():
            assert value not in line, f"{name} leaked into a log line: {line[:300]}"
        for special in ("white_roma", "christian"):
            assert special not in line, f"special category value in a log line: {line[:300]}"
