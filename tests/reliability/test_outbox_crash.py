"""kill -9 between the commit of state and the publication of its events, in both
services with a transactional outbox.

To hold a service exactly in that window, another replica holds the relay lease (as a
replica that is about to crash would): state and outbox rows commit, nothing is
published. The service is then killed, the lease lapses, and the restarted service
publishes; it is killed once more while it publishes (between a publish and the mark
that records it). Afterwards every stored enrolment / match has its event on the topic
under exactly one ``ce_id`` (a re-publication repeats the same ``ce_id``, which
consumers skip), and no event exists without its state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import EnrolmentAccepted
from shared.contracts.matching import MatchProposed, VolunteerRegistered
from shared.contracts.registry import registry_for
from shared.topics import ENROLMENT_EVENTS, MATCHING_MATCHES, MATCHING_VOLUNTEERS
from tests.factories.reporting import accepted, cloud, opted_in
from tests.reliability.broker import Broker, start_broker
from tests.reliability.config import SEED, log
from tests.reliability.database import Database
from tests.reliability.figures import record_figures
from tests.reliability.kafka_io import decode_events, outgoing, read_topics
from tests.reliability.pipeline import BOROUGHS, Pipeline
from tests.reliability.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
async def broker(logs: Path) -> AsyncIterator[Broker]:
    """A broker per test: each test reads its topics from the beginning."""
    running = await start_broker(logs)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.kafka.stop)


CRASHED_REPLICA = {"owner": "replica-that-crashed"}


async def hold_lease(p: Pipeline, service: str, collection: str) -> None:
    async with p.mongo() as client:
        await client[p.database(service)][collection].replace_one(
            {"_id": "outbox-relay"},
            {**CRASHED_REPLICA, "expires_at": datetime.now(UTC) + timedelta(hours=1)},
            upsert=True,
        )


async def lapse_lease(p: Pipeline, service: str, collection: str) -> None:
    async with p.mongo() as client:
        await client[p.database(service)][collection].update_one(
            {"_id": "outbox-relay", **CRASHED_REPLICA},
            {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
        )


async def events_of(p: Pipeline, *topics: str) -> list[CloudEvent[Event]]:
    records = await read_topics(p.broker.bootstrap, topics)
    return [ce for _, ce in decode_events(records, registry_for(*topics))]


async def crash_while_publishing(p: Pipeline, name: str, rng: random.Random) -> None:
    """Kill -9 in the window, let the lease lapse, restart; kill again mid-publication."""
    svc = p[name]
    svc.kill()
    await lapse_lease(p, name, LEASES[name])
    svc.start()
    await svc.wait_ready()
    await asyncio.sleep(rng.uniform(0.0, 0.3))
    svc.kill()
    svc.start()
    await svc.wait_ready()


LEASES = {"enrolment": "outbox_lease", "matching": "outbox_lease"}


async def test_enrolment_state_and_events_do_not_diverge(
    broker: Broker, database: Database, logs: Path
) -> None:
    rng = random.Random(SEED + 30)
    p = Pipeline(broker, database.url, logs, services=("enrolment",))
    await p.prepare()
    await hold_lease(p, "enrolment", "outbox_lease")
    await p.start()
    try:
        submissions = p.new_submissions(500, rng)
        async with p.publisher() as publisher:
            await publisher.send([s.record() for s in submissions])

        async def stored() -> bool:
            async with p.mongo() as client:
                n = await client[p.database("enrolment")]["enrolments"].count_documents({})
            return n == len(submissions)

        await wait_until(
            stored, timeout_s=120, what="every enrolment stored", alive=[p["enrolment"]]
        )
        assert not [
            ce
            for ce in await events_of(p, ENROLMENT_EVENTS)
            if isinstance(ce.data, EnrolmentAccepted)
        ]

        await crash_while_publishing(p, "enrolment", rng)
        await p.wait_drained(120)
        verdict = await p.verify()
        log("enrolment outbox crash:\n%s", verdict.summary())
        assert verdict.exact, verdict.summary()
        record_figures("outbox crash (enrolment)", verdict, trials=2, submissions=len(submissions))
    finally:
        p.stop()


async def test_matching_state_and_events_do_not_diverge(
    broker: Broker, database: Database, logs: Path
) -> None:
    rng = random.Random(SEED + 31)
    p = Pipeline(broker, database.url, logs, services=("matching",))
    await p.prepare()
    await hold_lease(p, "matching", "outbox_lease")
    await p.start()
    try:
        await p.register_volunteers(per_borough=3, capacity=5)
        opt_ins = []
        for _ in range(200):
            ca = rng.choice(list(BOROUGHS))
            enrolment = accepted(la=rng.choice(BOROUGHS[ca]))
            event = opted_in(enrolment).model_copy(update={"availability": ("mon-am",)})
            opt_ins.append(outgoing(cloud(event)))
        async with p.publisher() as publisher:
            await publisher.send(opt_ins)

        async def proposed() -> int:
            async with p.mongo() as client:
                db = client[p.database("matching")]
                matches = await db["matches"].count_documents({})
                participants = await db["participants"].count_documents({})
            return matches if participants == len(opt_ins) and matches >= 50 else 0

        await wait_until(proposed, timeout_s=120, what="matches proposed", alive=[p["matching"]])
        published = await events_of(p, MATCHING_MATCHES, MATCHING_VOLUNTEERS)
        assert not published, f"{len(published)} events published while the lease was held"

        await crash_while_publishing(p, "matching", rng)
        await p.wait_drained(120)
        verdict = await p.verify()
        events = await events_of(p, MATCHING_MATCHES, MATCHING_VOLUNTEERS, ENROLMENT_EVENTS)
        volunteers = {
            ce.data.volunteer_id for ce in events if isinstance(ce.data, VolunteerRegistered)
        }
        ids_per_volunteer = {
            v: {
                ce.id
                for ce in events
                if isinstance(ce.data, VolunteerRegistered) and ce.data.volunteer_id == v
            }
            for v in volunteers
        }
        log("matching outbox crash:\n%s", verdict.summary())
        assert verdict.exact, verdict.summary()
        assert len(volunteers) == p.volunteers
        assert all(len(ids) == 1 for ids in ids_per_volunteer.values())
        assert verdict.figures["matching"].notes["matches"] == len(
            {ce.data.match_id for ce in events if isinstance(ce.data, MatchProposed)}
        )
        record_figures("outbox crash (matching)", verdict, trials=2, submissions=len(opt_ins))
    finally:
        p.stop()
