"""Scale out: two instances of each consumer service in one consumer group give the same
results as one instance on the same stream.

Four consumer groups read the same records on the real embedded broker: one reporting
instance, two reporting instances (two apps, one group, one database), one matching
instance and two matching instances, each group and database unique to this module.
Every group starts at the current end of the topics (its offsets are committed there
first), so all four see exactly this module's events and nothing else from the shared
topics. The pairs are checked to have split the partitions between them (two members of
a stable group, both applying records), then:

* reporting: the summary and every breakdown (unrounded) of the pair equal the single
  instance's, and equal the counts the events imply;
* matching: both pools hold exactly the participants who opted in, each recorded once.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from fastapi import FastAPI

from services.matching.app import create_app as create_matching
from services.matching.settings import MatchingSettings
from services.reporting.app import create_app as create_reporting
from services.reporting.settings import ReportingSettings
from shared.auth import ApiKeyStore, Principal, Role
from shared.cloudevents import CloudEvent, Event
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Ethnicity,
    Level,
    Outcome,
    Programme,
    WithdrawalReason,
)
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES
from tests.factories.reporting import (
    Pair,
    accepted,
    assessed,
    attendance,
    cloud,
    completed,
    opted_in,
    withdrawn,
)
from tests.helpers import poll_until, unique
from tests.infra import Infra

YEAR = random.randint(1901, 1999)
ANALYST_KEY = "cg_it_scale_analyst_" + unique("k")
COORDINATOR_KEY = "cg_it_scale_coordinator_" + unique("k")
TOPICS = (ENROLMENT_EVENTS, MATCHING_MATCHES)
BOROUGHS = [
    *LOCAL_AUTHORITIES[CombinedAuthority.GREATER_MANCHESTER],
    *LOCAL_AUTHORITIES[CombinedAuthority.WEST_MIDLANDS],
]


@dataclass
class Stream:
    records: list[tuple[str, bytes, CloudEvent[Event]]]
    started: int
    opted_in: set[str]


def build_stream(seed: int = 20) -> Stream:
    """Enrolment lifecycles in two combined authorities, opt-ins and matches in YEAR."""
    rng = random.Random(seed)
    enrolment_events: list[Event] = []
    match_events: list[Event] = []
    learners: set[str] = set()
    started = 0
    for i in range(120):
        start = date(YEAR, rng.randint(1, 12), rng.randint(1, 28))
        programme = Programme.ESOL if i % 3 else Programme.DIGITAL
        e = accepted(
            la=rng.choice(BOROUGHS),
            programme=programme,
            level=Level.ENTRY_1 if programme is Programme.ESOL else Level.LEVEL_1,
            start=start,
            ethnicity=rng.choice(list(Ethnicity)),
        )
        started += 1
        enrolment_events += [e, attendance(e, 8, rng.randint(2, 8))]
        if programme is Programme.ESOL and rng.random() < 0.5:
            enrolment_events.append(assessed(e, Level.ENTRY_2))
        fate = rng.random()
        if fate < 0.6:
            outcome = rng.choice([Outcome.ACHIEVED, Outcome.ACHIEVED, Outcome.NOT_ACHIEVED])
            reached = Level.ENTRY_2 if programme is Programme.ESOL else None
            enrolment_events.append(completed(e, outcome, reached))
        elif fate < 0.75:
            enrolment_events.append(withdrawn(e, rng.choice(list(WithdrawalReason))))
        if rng.random() < 0.4:
            enrolment_events.append(opted_in(e))
            learners.add(e.learner)
            if rng.random() < 0.6:
                pair = Pair(e)
                match_events.append(pair.proposed())
                if rng.random() < 0.7:
                    match_events.append(pair.confirmed(rng.uniform(2, 40), rng.random() < 0.6))
                else:
                    match_events.append(pair.declined())
                    if rng.random() < 0.5:
                        again = Pair(e)
                        match_events += [again.proposed(5), again.confirmed(12)]
    records: list[tuple[str, bytes, CloudEvent[Event]]] = []
    for event in enrolment_events:  # keys as the producers use them
        key = event.model_dump()["learner"]
        records.append((ENROLMENT_EVENTS, key.encode(), cloud(event)))
    for event in match_events:
        key = event.model_dump()["local_authority"]
        records.append((MATCHING_MATCHES, key.encode(), cloud(event)))
    return Stream(records, started, learners)


STREAM = build_stream()


@dataclass
class Instance:
    app: FastAPI
    client: httpx.AsyncClient
    group: str

    async def metric(self, name: str, labels: str = "") -> float:
        """Sum of a metric's samples, optionally only those whose labels start so."""
        text = (await self.client.get("/metrics")).text
        prefixes = (f"{name}{{{labels}",) if labels else (name + "{", name + " ")
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefixes)
        )


@contextlib.asynccontextmanager
async def started(app: FastAPI, group: str) -> AsyncIterator[Instance]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Instance(app, client, group)


async def start_groups_at_the_end(infra: Infra, groups: list[str]) -> None:
    """Commit every partition of both topics at its current end for each group, so the
    groups read only what is published from now on."""
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t))
        ]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    for group in groups:
        committer = AIOKafkaConsumer(
            bootstrap_servers=infra.kafka_bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
        )
        await committer.start()
        try:
            committer.assign(tps)
            await committer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in tps})
        finally:
            await committer.stop()


async def members(infra: Infra, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.groups
    _error, _group, state, _ptype, _protocol, group_members = described[:6]
    return len(group_members) if state == "Stable" else 0


async def caught_up(infra: Infra, group: str, topics: tuple[str, ...]) -> bool:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def add_keys(app: FastAPI) -> None:
    keys = ApiKeyStore(app.state.runtime.db["api_keys"])
    await keys.add_key(Principal(principal_id="a", name="Analyst", role=Role.ANALYST), ANALYST_KEY)
    await keys.add_key(
        Principal(
            principal_id="c",
            name="Coordinator",
            role=Role.COORDINATOR,
            combined_authorities=tuple(CombinedAuthority),
        ),
        COORDINATOR_KEY,
    )


def reporting(infra: Infra, database: str, group: str) -> FastAPI:
    return create_reporting(
        ReportingSettings(
            kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
            mongodb_url=infra.mongodb_url,
            mongodb_database=database,
            consumer_group=group,
            projection_batch_timeout_ms=100,
            projection_max_records=50,  # several batches per instance
            log_json=False,
        )
    )


def matching(infra: Infra, database: str, group: str) -> FastAPI:
    return create_matching(
        MatchingSettings(
            kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
            mongodb_url=infra.mongodb_url,
            mongodb_database=database,
            consumer_group=group,
            consumer_session_timeout_ms=6000,
            outbox_poll_interval_s=0.2,
            log_json=False,
        )
    )


@dataclass
class Deployment:
    reporting_single: Instance
    reporting_pair: tuple[Instance, Instance]
    matching_single: Instance
    matching_pair: tuple[Instance, Instance]


@pytest.fixture(scope="module")
async def deployment(infra: Infra) -> AsyncIterator[Deployment]:
    groups = {name: unique(f"scale-{name}") for name in ("r1", "r2", "m1", "m2")}
    await start_groups_at_the_end(infra, list(groups.values()))
    r1_db, r2_db = unique("cg_reporting_scale1"), unique("cg_reporting_scale2")
    m1_db, m2_db = unique("cg_matching_scale1"), unique("cg_matching_scale2")
    async with contextlib.AsyncExitStack() as stack:

        async def run(factory: Callable[[], FastAPI], group: str) -> Instance:
            instance = await stack.enter_async_context(started(factory(), group))
            await add_keys(instance.app)
            return instance

        deployment = Deployment(
            reporting_single=await run(lambda: reporting(infra, r1_db, groups["r1"]), groups["r1"]),
            reporting_pair=(
                await run(lambda: reporting(infra, r2_db, groups["r2"]), groups["r2"]),
                await run(lambda: reporting(infra, r2_db, groups["r2"]), groups["r2"]),
            ),
            matching_single=await run(lambda: matching(infra, m1_db, groups["m1"]), groups["m1"]),
            matching_pair=(
                await run(lambda: matching(infra, m2_db, groups["m2"]), groups["m2"]),
                await run(lambda: matching(infra, m2_db, groups["m2"]), groups["m2"]),
            ),
        )
        for group, expected in ((groups["r2"], 2), (groups["m2"], 2)):

            async def joined(group: str = group, expected: int = expected) -> bool:
                return await members(infra, group) == expected

            await poll_until(joined, timeout_s=30, what=f"both instances in {group}")

        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
        await producer.start()
        try:
            for topic, key, ce in STREAM.records:
                await producer.send(
                    topic,
                    ce.body(),
                    key=key,
                    headers=[(k, v.encode()) for k, v in ce.headers().items()],
                )
            await producer.flush()
        finally:
            await producer.stop()
        for instance, topics in (
            (deployment.reporting_single, TOPICS),
            (deployment.reporting_pair[0], TOPICS),
            (deployment.matching_single, (ENROLMENT_EVENTS,)),
            (deployment.matching_pair[0], (ENROLMENT_EVENTS,)),
        ):

            async def done(group: str = instance.group, topics: tuple[str, ...] = topics) -> bool:
                return await caught_up(infra, group, topics)

            await poll_until(done, timeout_s=60, what=f"{instance.group} to catch up")
        yield deployment


async def report(instance: Instance, path: str, **params: Any) -> dict[str, Any]:
    params = {"from": f"{YEAR}-01", "to": f"{YEAR}-12", "unrounded": "true", **params}
    response = await instance.client.get(
        path, params=params, headers={"Authorization": f"Bearer {ANALYST_KEY}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body.pop("generated_at", None)
    return body


async def test_two_reporting_instances_report_exactly_what_one_does(
    deployment: Deployment,
) -> None:
    single, pair = deployment.reporting_single, deployment.reporting_pair
    for instance in pair:  # both took part: the partitions were shared
        assert await instance.metric("reporting_events_applied_total") > 0

    one = await report(single, "/v1/reports/summary")
    two = await report(pair[1], "/v1/reports/summary")
    assert one["enrolments"]["started"] == STREAM.started
    assert one["waiting_list"]["opted_in"] == len(STREAM.opted_in)
    assert one["matching"]["confirmed"] > 0
    assert two == one
    for by in ("local_authority", "programme", "level", "ethnicity", "month"):
        assert await report(pair[0], "/v1/reports/breakdown", by=by) == await report(
            single, "/v1/reports/breakdown", by=by
        ), by


async def pool(instance: Instance) -> dict[str, int]:
    response = await instance.client.get(
        "/v1/pool", headers={"Authorization": f"Bearer {COORDINATOR_KEY}"}
    )
    assert response.status_code == 200, response.text
    waiting: dict[str, int] = {}
    for view in response.json():
        for p in view["waiting"]:
            if p["participant"] in STREAM.opted_in:
                waiting[p["participant"]] = waiting.get(p["participant"], 0) + 1
    return waiting


async def test_two_matching_instances_pool_exactly_the_participants_one_does(
    deployment: Deployment,
) -> None:
    single, pair = deployment.matching_single, deployment.matching_pair
    for instance in pair:
        assert await instance.metric("matching_opt_ins_total") > 0
    one, two = await pool(single), await pool(pair[0])
    assert set(one) == STREAM.opted_in
    assert two == one
    assert set(two.values()) == {1}  # each participant recorded once
    # Redeliveries during the rebalance are expected (at-least-once); each participant is
    # *recorded* once, whichever instance saw it first. (The topic is shared with the
    # rest of the suite, so counters include other tests' opt-ins: compare per pool.)
    new = 'outcome="new"'
    assert all([await i.metric("matching_opt_ins_total", new) > 0 for i in pair])
