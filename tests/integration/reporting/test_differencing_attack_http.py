"""The differencing attacker against the real reporting service over HTTP, on the real
embedded broker and database: a smaller seeded population (Tees Valley, two months of a
random year in the last century, so other modules' events on the shared topics are not
in range), every report and CSV, every area, three programme filters, every month
range. It must recover no small count. The unrounded answers it is scored against are
audit-logged, without figures."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.reporting.app import create_app
from services.reporting.domain.dimensions import ETHNIC_GROUP_LABELS, LEVEL_LABELS
from services.reporting.domain.disclosure import CellKeyMethod
from services.reporting.settings import ReportingSettings
from shared.auth import ApiKeyStore, Principal, Role
from shared.contracts.enrolment import EnrolmentAccepted
from shared.contracts.reference import LOCAL_AUTHORITIES, CombinedAuthority, Programme
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES
from tests.factories.reporting import cloud
from tests.helpers import poll_until, running_app, unique
from tests.infra import Infra
from tests.security.differencing_attacker import (
    Attack,
    CellKeyKnowledge,
    Query,
    Universe,
    error_bands,
    plan,
    run,
    table_from_csv,
)
from tests.security.seeded_population import seeded_events

YEAR = random.randint(1901, 1999)
CA = CombinedAuthority.TEES_VALLEY
MONTHS = [date(YEAR, 1, 1), date(YEAR, 2, 1)]
ANALYST_KEY = "cg_it_attacker_" + unique("k")


@pytest.fixture(scope="module")
async def client(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    settings = ReportingSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=infra.mongodb_url,
        mongodb_database=unique("cg_reporting_attack"),
        consumer_group=unique("reporting-attack"),
        projection_batch_timeout_ms=100,
        rate_limit_per_s=10_000,
        log_json=False,
    )
    app = create_app(settings)
    async with running_app(app) as http:
        db = app.state.runtime.db
        await ApiKeyStore(db["api_keys"]).add_key(
            Principal(principal_id=unique("attacker"), name="Attacker", role=Role.ANALYST),
            ANALYST_KEY,
        )
        yield http


async def publish(infra: Infra, events: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            ce = cloud(event)
            topic = (
                MATCHING_MATCHES if type(event).__name__.startswith("Match") else ENROLMENT_EVENTS
            )
            key = str(getattr(event, "learner", None) or getattr(event, "participant", "x"))
            await producer.send(
                topic,
                ce.body(),
                key=key.encode(),
                headers=[(k, v.encode()) for k, v in ce.headers().items()],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def test_the_attacker_recovers_nothing_over_http(
    infra: Infra, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    events = seeded_events(YEAR, [CA], MONTHS, enrolments=300)
    started = sum(isinstance(e, EnrolmentAccepted) for e in events)
    await publish(infra, events)
    headers = {"Authorization": f"Bearer {ANALYST_KEY}"}
    span = {"combined_authority": CA.value, "from": f"{YEAR}-01", "to": f"{YEAR}-02"}

    async def projected() -> bool:
        r = await client.get(
            "/v1/reports/summary", params={**span, "unrounded": "true"}, headers=headers
        )
        return r.status_code == 200 and r.json()["enrolments"]["started"] == started

    await poll_until(projected, timeout_s=120, what="the seeded population to be projected")

    universe = Universe(
        las_of={CA.value: list(LOCAL_AUTHORITIES[CA])},
        programmes=[p.value for p in Programme],
        levels=list(LEVEL_LABELS),
        ethnic_groups=list(ETHNIC_GROUP_LABELS),
        months=[f"{m.year:04d}-{m.month:02d}" for m in MONTHS],
    )
    areas = [{"combined_authority": CA.value}] + [
        {"local_authority": la} for la in LOCAL_AUTHORITIES[CA]
    ]
    reports = (
        "summary",
        "csv:local_authority",
        "breakdown:programme",
        "breakdown:level",
        "breakdown:ethnicity",
        "breakdown:month",
    )
    queries = plan(universe, areas=areas, programmes=[None, "esol", "digital"], reports=reports)

    async def fetch(q: Query, rounded: bool) -> dict[str, Any]:
        params = dict(q.params)
        if not rounded:
            params["unrounded"] = "true"
        if q.report == "summary":
            r = await client.get("/v1/reports/summary", params=params, headers=headers)
        else:
            kind, by = q.report.split(":")
            path = "/v1/reports/export.csv" if kind == "csv" else "/v1/reports/breakdown"
            r = await client.get(path, params={**params, "by": by}, headers=headers)
        assert r.status_code == 200, r.text
        if q.report.startswith("csv:"):
            return table_from_csv(r.text)
        body: dict[str, Any] = r.json()
        return body

    method = ReportingSettings().disclosure()
    assert isinstance(method, CellKeyMethod)
    caplog.set_level(logging.INFO, logger="services.reporting.audit")
    attack = await run(Attack(universe, CellKeyKnowledge(method)), queries, fetch)

    assert attack.unsound() == []
    assert attack.recovered(10) == [] and attack.recovered_hidden() == []
    assert len(attack.truth) > 1000
    bands = {b.band: b for b in error_bands(attack)}
    assert all(b.max_abs_error <= 5 for b in bands.values())

    # Every unrounded request was audit-logged: who and which filters, never a figure.
    audits = [r for r in caplog.records if r.name == "services.reporting.audit"]
    assert len(audits) >= len(queries)
    assert {getattr(r, "role", None) for r in audits} == {"analyst"}
    assert all("started" not in r.getMessage() for r in audits)
    assert all(set(getattr(r, "filters", {})) >= {"from", "to"} for r in audits)
