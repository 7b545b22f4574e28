"""Reporting against the real embedded broker and database.

Events are published by an independent producer (plain aiokafka) and consumed by the
running service. Each module run uses its own database, consumer group and a random
year in the last century for its dates, so reports filtered to that year see only this
module's events even though the topics are shared with the rest of the suite.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.reporting.app import create_app
from services.reporting.domain.dimensions import Filters
from services.reporting.integration_schemas import (
    BridgesReport,
    EsolComparisonReport,
    IndicatorsReport,
    WaitingReport,
)
from services.reporting.rebuild import rebuild
from services.reporting.repository import READ_MODEL_COLLECTIONS, active_generation
from services.reporting.settings import ReportingSettings
from services.reporting.use_cases import integration_queries
from shared.auth import ApiKeyStore, Principal, Role
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import AttendanceRecorded
from shared.contracts.reference import (
    CombinedAuthority,
    Ethnicity,
    Level,
    Outcome,
    Programme,
    WithdrawalReason,
)
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES, dead_letter_topic
from tests.factories.reporting import (
    GM,
    MANCHESTER,
    OLDHAM,
    WIGAN,
    Pair,
    accepted,
    assessed,
    cloud,
    completed,
    opted_in,
    ref_of,
    withdrawn,
)
from tests.factories.reporting_integration import (
    InMemoryIntegrationReader,
    integration_scenario,
)
from tests.helpers import poll_until, running_app, unique
from tests.infra import Infra

YEAR = random.randint(1901, 1999)
# The integration reports' scenario (issue 16) lives in another year of its own.
INTEGRATION_YEAR = random.choice([y for y in range(1901, 2000) if y != YEAR])
ANALYST_KEY = "cg_it_analyst_" + unique("k")
COORDINATOR_KEY = "cg_it_coordinator_" + unique("k")
PROVIDER_KEY = "cg_it_provider_" + unique("k")


@dataclass
class Service:
    settings: ReportingSettings
    client: httpx.AsyncClient
    producer: AIOKafkaProducer
    db: AsyncDatabase[dict[str, Any]]
    infra: Infra

    async def get(self, path: str, key: str | None = ANALYST_KEY, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return await self.client.get(path, params=params, headers=headers)

    async def summary(self, key: str = ANALYST_KEY, **params: Any) -> dict[str, Any]:
        params.setdefault("from", f"{YEAR}-01")
        params.setdefault("to", f"{YEAR}-12")
        if key == ANALYST_KEY:
            params.setdefault("unrounded", "true")
        response = await self.get("/v1/reports/summary", key, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def settings_for(infra: Infra, database: str, group: str) -> ReportingSettings:
    return ReportingSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=infra.mongodb_url,
        mongodb_database=database,
        consumer_group=group,
        projection_batch_timeout_ms=100,
        rebuild_drop_grace_s=0.1,
        log_json=False,
    )


@pytest.fixture(scope="module")
async def svc(infra: Infra) -> AsyncIterator[Service]:
    settings = settings_for(infra, unique("cg_reporting_it"), unique("reporting-it"))
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    db = mongo[settings.database_name]
    keys = ApiKeyStore(db["api_keys"])
    await keys.add_key(Principal(principal_id="a", name="Analyst", role=Role.ANALYST), ANALYST_KEY)
    await keys.add_key(
        Principal(
            principal_id="c",
            name="GM coordinator",
            role=Role.COORDINATOR,
            combined_authorities=(CombinedAuthority.GREATER_MANCHESTER,),
        ),
        COORDINATOR_KEY,
    )
    await keys.add_key(
        Principal(principal_id="p", name="A college", role=Role.PROVIDER), PROVIDER_KEY
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await producer.start()
    try:
        async with running_app(create_app(settings)) as client:
            yield Service(settings, client, producer, db, infra)
    finally:
        await producer.stop()
        await mongo.close()


async def publish(svc: Service, events: list[CloudEvent[Event]]) -> None:
    for ce in events:
        topic = MATCHING_MATCHES if ce.type.split(".")[2].startswith("Match") else ENROLMENT_EVENTS
        key = str(getattr(ce.data, "learner", None) or getattr(ce.data, "local_authority", "x"))
        await svc.producer.send(
            topic,
            ce.body(),
            key=key.encode(),
            headers=[(k, v.encode()) for k, v in ce.headers().items()],
        )
    await svc.producer.flush()


async def caught_up(infra: Infra, group: str) -> bool:
    """The consumer group has committed every record now in both topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # loads metadata of every topic
        tps = [
            TopicPartition(t, p)
            for t in (ENROLMENT_EVENTS, MATCHING_MATCHES)
            for p in sorted(consumer.partitions_for_topic(t) or [])
        ]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def snapshot(db: AsyncDatabase[dict[str, Any]], generation: int) -> dict[str, list[bytes]]:
    raw = db.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))
    out: dict[str, list[bytes]] = {}
    for name in READ_MODEL_COLLECTIONS:
        docs = await raw[f"g{generation}_{name}"].find({}).sort("_id", 1).to_list()
        out[name] = [bytes(d.raw) for d in docs]
    return out


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------------------------
# The scenario: Manchester ESOL learners and Oldham digital learners, in YEAR.


@dataclass
class Scenario:
    events: list[CloudEvent[Event]]
    esol: list[Any]
    digital: list[Any]


def build_scenario() -> Scenario:
    jan, feb = date(YEAR, 1, 12), date(YEAR, 2, 9)
    esol = [
        accepted(
            la=MANCHESTER,
            level=Level.ENTRY_1,
            start=jan if i < 5 else feb,
            ethnicity=Ethnicity.ASIAN_PAKISTANI if i % 2 else Ethnicity.WHITE_BRITISH,
        )
        for i in range(9)
    ]
    digital = [
        accepted(la=OLDHAM, programme=Programme.DIGITAL, level=Level.LEVEL_1, start=jan)
        for _ in range(3)
    ]
    events: list[Event] = [*esol, *digital]
    events += [completed(e, Outcome.ACHIEVED, Level.ENTRY_2) for e in esol[:4]]
    events += [completed(e, Outcome.NOT_ACHIEVED) for e in esol[4:6]]
    events += [withdrawn(esol[6], WithdrawalReason.HEALTH)]
    events += [withdrawn(esol[7], WithdrawalReason.FINANCIAL)]
    events += [assessed(esol[8], Level.ENTRY_3), completed(digital[0])]
    events += [opted_in(e) for e in esol[:5]]
    pairs = [Pair(e) for e in esol[:3]]
    for pair, wait, cross in zip(pairs, (4.0, 10.0, 20.0), (True, True, False), strict=True):
        events += [pair.proposed(), pair.confirmed(wait, cross)]
    declined = Pair(esol[3])
    events += [declined.proposed(), declined.declined()]
    return Scenario([cloud(e) for e in events], esol, digital)


SCENARIO = build_scenario()


async def test_events_become_read_models_and_disclosure_controlled_reports(svc: Service) -> None:
    await publish(svc, SCENARIO.events)

    async def projected() -> dict[str, Any] | None:
        s = await svc.summary()
        done = s["enrolments"]["started"] == 12 and s["matching"]["declined"] == 1
        return s if done else None

    found = await poll_until(projected, timeout_s=60, what="the scenario to be projected")
    assert found is not None
    s = found
    assert s["enrolments"] == {
        "started": 12,
        "stayed": 10,
        "withdrawn": 2,
        "completed": 7,
        "continuing": 3,
        "on_break": 0,
        "achieved": 5,
        "completion_rate": round(7 / 9, 3),
        "achievement_rate": round(5 / 9, 3),
        "retention_rate": round(10 / 12, 3),
    }
    esol = s["esol"]
    assert (esol["all"]["esol_assessed"], esol["all"]["esol_progressed"]) == (5, 5)
    assert (esol["matched"]["started"], esol["matched"]["achieved"]) == (3, 3)
    assert (esol["unmatched"]["started"], esol["unmatched"]["achieved"]) == (6, 1)
    assert s["matching"]["confirmed"] == 3 and s["matching"]["cross_background"] == 2
    assert s["matching"]["median_wait_days"] == 10.0
    assert s["waiting_list"] == {"opted_in": 5, "waiting": 2, "matched": 3}

    # The same numbers for a coordinator: perturbed, small counts shown as "<10".
    c = await svc.summary(COORDINATOR_KEY)
    started = c["enrolments"]["started"]
    assert started == "<10" or (started % 5 == 0 and abs(started - 12) <= 5)
    assert c["enrolments"]["withdrawn"] == "<10"
    assert c["enrolments"]["completion_rate"] is None  # beside a small count: withheld
    assert c["matching"]["confirmed"] == "<10"
    assert c["matching"]["median_wait_days"] is None  # withheld beside a small count
    assert c["disclosure"]["mode"] == "rounded" and c["disclosure"]["method"] == "cell_key"
    assert c == await svc.summary(COORDINATOR_KEY)  # the same noise every time

    # Breakdown by borough lists all ten Greater Manchester boroughs, Wigan included.
    response = await svc.get(
        "/v1/reports/breakdown",
        COORDINATOR_KEY,
        by="local_authority",
        **{"from": f"{YEAR}-01", "to": f"{YEAR}-12"},
    )
    table = response.json()
    rows = {r["code"]: r["values"] for r in table["rows"]}
    assert len(rows) == 10 and rows[WIGAN]["started"] == "<10"  # zero is a small count too
    assert rows[OLDHAM]["started"] == "<10"
    # The total row is the same records as the summary: the same published figure.
    assert table["total"]["values"]["started"] == started
    assert response.headers["cache-control"] == "no-store"

    by_month = (
        await svc.get(
            "/v1/reports/breakdown",
            by="month",
            unrounded="true",
            **{"from": f"{YEAR}-01", "to": f"{YEAR}-03"},
        )
    ).json()
    assert [(r["code"], r["values"]["started"]) for r in by_month["rows"]] == [
        (f"{YEAR}-01", 8),
        (f"{YEAR}-02", 4),
        (f"{YEAR}-03", 0),
    ]
    by_ethnicity = (
        await svc.get(
            "/v1/reports/breakdown",
            by="ethnicity",
            unrounded="true",
            **{"from": f"{YEAR}-01", "to": f"{YEAR}-12"},
        )
    ).json()
    groups = {r["code"]: r["values"]["started"] for r in by_ethnicity["rows"]}
    assert (groups["asian"], groups["white"], groups["not_stated"]) == (4, 5, 3)

    csv_response = await svc.get(
        "/v1/reports/export.csv", COORDINATOR_KEY, **{"from": f"{YEAR}-01", "to": f"{YEAR}-12"}
    )
    assert csv_response.headers["content-type"].startswith("text/csv")
    lines = csv_response.text.splitlines()
    assert lines[0].startswith("local_authority,label,started,stayed")
    assert any(line.startswith(f"{WIGAN},Wigan,<10,") for line in lines)

    # One current-state document per enrolment and per match in the service's database.
    generation = await active_generation(svc.db)
    ids = [e.enrolment_id for e in SCENARIO.esol + SCENARIO.digital]
    docs = await svc.db[f"g{generation}_enrolments"].find({"_id": {"$in": ids}}).to_list()
    assert len(docs) == 12
    assert sum(d["status"] == 3 for d in docs) == 2
    assert (
        await svc.db[f"g{generation}_matches"].count_documents(
            {"participant": {"$in": [e.learner for e in SCENARIO.esol]}}
        )
        == 4
    )


async def test_the_same_events_again_change_no_number(svc: Service) -> None:
    await poll_until(lambda: caught_up(svc.infra, svc.settings.group_id), timeout_s=60)
    generation = await active_generation(svc.db)
    before = await snapshot(svc.db, generation)
    metrics_before = (await svc.client.get("/metrics")).text
    skipped_before = metric(
        metrics_before, "reporting_events_skipped_total", reason="duplicate_event_id"
    )

    await publish(svc, SCENARIO.events)  # the very same CloudEvents: same ce_id

    async def skipped() -> bool:
        text = (await svc.client.get("/metrics")).text
        now = metric(text, "reporting_events_skipped_total", reason="duplicate_event_id")
        return now - skipped_before >= len(SCENARIO.events)

    await poll_until(skipped, timeout_s=60, what="the duplicates to be consumed and skipped")
    assert await snapshot(svc.db, generation) == before
    assert (await svc.summary())["enrolments"]["started"] == 12


async def test_a_replay_from_the_beginning_changes_no_number(svc: Service) -> None:
    """A second projector (a new consumer group, so it reads both topics from offset 0)
    on the same database: every record is fenced by the stored positions."""
    await poll_until(lambda: caught_up(svc.infra, svc.settings.group_id), timeout_s=60)
    generation = await active_generation(svc.db)
    before = await snapshot(svc.db, generation)
    replay = settings_for(svc.infra, svc.settings.database_name, unique("reporting-replay"))
    async with running_app(create_app(replay)) as client:
        await poll_until(
            lambda: caught_up(svc.infra, replay.group_id), timeout_s=90, what="the replay"
        )
        text = (await client.get("/metrics")).text
    assert metric(text, "reporting_events_skipped_total", reason="duplicate_offset") >= len(
        SCENARIO.events
    )
    assert metric(text, "reporting_events_applied_total") == 0
    assert await snapshot(svc.db, generation) == before


async def test_poison_in_a_batch_is_dead_lettered_and_the_rest_applied(svc: Service) -> None:
    june = date(YEAR, 6, 3)
    good = [accepted(la=WIGAN, start=june) for _ in range(3)]
    marker = unique("poison").encode()
    outside = AttendanceRecorded(
        **{**ref_of(good[0]), "local_authority": "E08000025"},  # Birmingham is not in GM
        period_start=june,
        period_end=june,
        sessions_planned=2,
        sessions_attended=2,
    )
    same_key = good[0].learner.encode()
    sends = [
        (cloud(good[0]).body(), cloud(good[0]).headers()),
        (b"\x00 not a cloud event " + marker, {"x-marker": marker.decode()}),
        (cloud(good[1]).body(), cloud(good[1]).headers()),
        (cloud(outside).body(), {**cloud(outside).headers(), "x-marker": marker.decode()}),
        (cloud(good[2]).body(), cloud(good[2]).headers()),
        (cloud(completed(good[0])).body(), cloud(completed(good[0])).headers()),
    ]
    for body, headers in sends:  # one key: one partition, consecutive offsets, one batch
        await svc.producer.send(
            ENROLMENT_EVENTS,
            body,
            key=same_key,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    await svc.producer.flush()

    async def applied() -> bool:
        s = await svc.summary(**{"from": f"{YEAR}-06", "to": f"{YEAR}-06"})
        return bool(s["enrolments"]["started"] == 3 and s["enrolments"]["completed"] == 1)

    await poll_until(applied, timeout_s=60, what="the good records of the batch")

    consumer = AIOKafkaConsumer(
        dead_letter_topic(ENROLMENT_EVENTS),
        bootstrap_servers=svc.infra.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, str]] = []
    try:

        async def dead_letters() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    if (
                        headers.get("x-marker") == marker.decode()
                        and headers.get("dlq_consumer_group") == svc.settings.group_id
                    ):
                        found.append(headers)
            return len(found) >= 2

        await poll_until(dead_letters, timeout_s=30, what="two dead letters")
    finally:
        await consumer.stop()
    errors = " | ".join(sorted(h["dlq_error"] for h in found))
    assert "InvalidEvent: local authority 'E08000025' does not belong" in errors
    assert "EnvelopeError: not a CloudEvent: missing header" in errors
    assert {h["dlq_error_kind"] for h in found} == {"poison"}


async def test_integration_reports_are_exact_unrounded_and_controlled_rounded(
    svc: Service,
) -> None:
    """Bridges, waiting by group, indicators (and CSV), the stratified ESOL comparison:
    from real events through the real broker and database, equal to the same events
    projected in memory, in both modes. The rebuild test after this one proves they are
    rebuilt byte for byte."""
    year = INTEGRATION_YEAR
    events = integration_scenario(year)
    await publish(svc, [cloud(e) for e in events])
    area = {"combined_authority": GM.value, "from": f"{year}-01", "to": f"{year}-03"}

    async def projected() -> dict[str, Any] | None:
        r = await svc.get("/v1/reports/indicators", unrounded="true", **area)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        row = next(x for x in body["rows"] if x["local_authority"] == MANCHESTER)
        done = row["values"]["bridges_active_6m_share"]["value"] == 0.5
        return body if done and row["values"]["esol_starts"]["value"] == 5 else None

    await poll_until(projected, timeout_s=60, what="the integration scenario to be projected")

    reader = InMemoryIntegrationReader(events)
    filters = Filters(
        combined_authorities=(GM.value,), month_from=f"{year}-01", month_to=f"{year}-03"
    )
    today = datetime.now(UTC).date()
    cell_key = svc.settings.disclosure()
    reports: list[tuple[str, dict[str, str], type[BaseModel], Any]] = [
        (
            "/v1/reports/bridges",
            {},
            BridgesReport,
            lambda c: integration_queries.bridges(reader, filters, today=today, control=c),
        ),
        (
            "/v1/reports/waiting",
            {"by": "sex"},
            WaitingReport,
            lambda c: integration_queries.waiting(reader, "sex", filters, control=c),
        ),
        (
            "/v1/reports/indicators",
            {},
            IndicatorsReport,
            lambda c: integration_queries.indicators(reader, filters, today=today, control=c),
        ),
        (
            "/v1/reports/esol-comparison",
            {},
            EsolComparisonReport,
            lambda c: integration_queries.esol_comparison(reader, filters, control=c),
        ),
    ]
    for path, extra, model, expected_of in reports:
        for key, unrounded, control in (
            (ANALYST_KEY, "true", None),
            (COORDINATOR_KEY, "false", cell_key),
        ):
            response = await svc.get(path, key, unrounded=unrounded, **area, **extra)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["cache-control"] == "no-store"
            expected = model.model_validate(await expected_of(control)).model_dump(
                mode="json", by_alias=True
            )
            assert response.json() == expected, (path, unrounded)

    unrounded = (await svc.get("/v1/reports/bridges", unrounded="true", **area)).json()
    jan = next(r for r in unrounded["rows"] if r["local_authority"] == MANCHESTER)
    assert (jan["cross_background"], jan["active_6w"], jan["active_6m"]) == (2, 2, 1)
    rounded = (await svc.get("/v1/reports/bridges", COORDINATOR_KEY, **area)).json()
    jan = next(r for r in rounded["rows"] if r["local_authority"] == MANCHESTER)
    assert jan["cross_background"] == "<10" and jan["share_active_6w"] is None

    csv_response = await svc.get("/v1/reports/indicators.csv", COORDINATOR_KEY, **area)
    assert csv_response.headers["content-type"].startswith("text/csv")
    lines = csv_response.text.splitlines()
    assert lines[0].startswith("local_authority,label,quarter,domain,indicator")
    assert any(
        line.startswith(
            f"{MANCHESTER},Manchester,{year}-Q1,language_and_communication,esol_starts,"
        )
        for line in lines
    )
    # These reports take no programme or level filter, and nothing they do not know.
    for bad in ({"programme": "esol"}, {"threshold": "1"}):
        refused = await svc.get("/v1/reports/indicators", COORDINATOR_KEY, **bad)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await svc.get("/v1/reports/waiting", by="religion")).status_code == 422


async def test_rebuild_gives_byte_identical_read_models_and_live_projection_goes_on(
    svc: Service,
) -> None:
    await poll_until(lambda: caught_up(svc.infra, svc.settings.group_id), timeout_s=60)
    old = await active_generation(svc.db)
    live = await snapshot(svc.db, old)
    assert live["agg_outcomes"] and live["enrolments"]
    assert live["agg_bridges"] and live["agg_waiting_groups"] and live["agg_esol_bridged"]

    # Small batches: the rebuild cuts the log differently from the live projector.
    result = await rebuild(svc.settings, max_records=7)

    assert (result.old_generation, result.new_generation) == (old, old + 1)
    assert await active_generation(svc.db) == old + 1
    rebuilt = await snapshot(svc.db, old + 1)
    for name in READ_MODEL_COLLECTIONS:
        assert len(rebuilt[name]) == len(live[name]), name
        for i, (a, b) in enumerate(zip(live[name], rebuilt[name], strict=True)):
            assert a == b, f"{name} document {i} differs"
    assert f"g{old}_agg_outcomes" not in await svc.db.list_collection_names()

    # The live projector carries on in the new generation.
    september = accepted(la=OLDHAM, start=date(YEAR, 9, 1))
    await publish(svc, [cloud(september)])

    async def counted() -> bool:
        s = await svc.summary(**{"from": f"{YEAR}-09", "to": f"{YEAR}-09"})
        return bool(s["enrolments"]["started"] == 1)

    await poll_until(counted, timeout_s=60, what="an event after the rebuild")
    assert (await svc.summary())["enrolments"]["started"] == 16


async def test_reports_need_a_reporting_role_and_stay_in_scope(svc: Service) -> None:
    no_key = await svc.get("/v1/reports/summary", key=None)
    assert no_key.status_code == 401
    assert no_key.headers["content-type"] == "application/problem+json"
    assert (await svc.get("/v1/reports/summary", key="cg_wrong")).status_code == 401
    assert (await svc.get("/v1/reports/summary", key=PROVIDER_KEY)).status_code == 403
    outside = await svc.get("/v1/reports/summary", COORDINATOR_KEY, combined_authority="E47000007")
    assert outside.status_code == 403
    assert (
        await svc.get("/v1/reports/summary", COORDINATOR_KEY, local_authority="E08000025")
    ).status_code == 403
    unrounded = await svc.get("/v1/reports/summary", COORDINATOR_KEY, unrounded="true")
    assert unrounded.status_code == 403
    assert unrounded.json()["type"].endswith("unrounded-needs-analyst")
    bad_by = await svc.get("/v1/reports/breakdown", by="religion")
    assert bad_by.status_code == 422
    assert bad_by.json()["errors"][0]["field"] == "query.by"
    backwards = await svc.get("/v1/reports/summary", **{"from": "2025-05", "to": "2025-01"})
    assert backwards.status_code == 422
    meta = (await svc.get("/v1/reports/meta", COORDINATOR_KEY)).json()
    assert [ca["code"] for ca in meta["combined_authorities"]] == ["E47000001"]
    assert meta["can_unround"] is False


async def test_admin_cli_registers_keys_and_seeds_demo_keys_idempotently(svc: Service) -> None:
    env = {
        **os.environ,
        "COMMONGROUND_MONGODB_URL": svc.infra.mongodb_url,
        "REPORTING_MONGODB_DATABASE": svc.settings.database_name,
        "COMMONGROUND_DEMO_COORDINATOR_KEY": "demo-coordinator-" + unique("k"),
        "COMMONGROUND_DEMO_ANALYST_KEY": "demo-analyst-" + unique("k"),
    }

    async def admin(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.reporting.admin",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode or 0, out.decode(), err.decode()

    code, out, err = await admin("register", "--role", "analyst", "--name", "Mayor's analyst")
    assert code == 0, err
    key = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key:"))
    code, _, err = await admin("register", "--role", "coordinator", "--name", "No area")
    assert code == 2 and "combined-authority" in err
    for _ in range(2):
        code, _, err = await admin("seed-demo")
        assert code == 0, err
    assert await svc.db["api_keys"].count_documents({"principal_id": "demo-coordinator"}) == 1

    assert (await svc.get("/v1/reports/summary", key, unrounded="true")).status_code == 200
    demo = env["COMMONGROUND_DEMO_COORDINATOR_KEY"]
    meta = (await svc.get("/v1/reports/meta", demo)).json()
    assert meta["principal"]["role"] == "coordinator"
    assert len(meta["combined_authorities"]) == 6
    demo_analyst = env["COMMONGROUND_DEMO_ANALYST_KEY"]
    assert (await svc.get("/v1/reports/meta", demo_analyst)).json()["can_unround"] is True
