"""The matching service against the real embedded broker and database.

One app instance serves the whole module (consumer-group joins are slow on Tansu); the
last test replaces it with a fresh instance on the same database to prove restart
safety. Each test works in its own combined authority so that tests do not compete
for the same volunteers; the module has its own database and consumer group, and its
consumer starts at the end of the topic (a probe opt-in proves it is attached), so
opt-ins published by other test modules never enter this pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from services.matching import admin
from services.matching.app import create_app
from services.matching.entrypoints.dependencies import MatchingContext
from services.matching.settings import MatchingSettings
from shared.auth import ApiKeyStore, Principal, Role, new_api_key
from shared.cloudevents import CloudEvent, EnvelopeError, Event
from shared.contracts.enrolment import Background, Consent, ParticipantOptedIn
from shared.contracts.matching import (
    MatchCheckInRecorded,
    MatchConfirmed,
    MatchDeclined,
    MatchEnded,
    MatchProposed,
    VolunteerDbsExpired,
    VolunteerRegistered,
    VolunteerUpdated,
)
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Programme,
    Religion,
    Sex,
)
from shared.contracts.registry import registry_for
from shared.topics import (
    ENROLMENT_EVENTS,
    MATCHING_MATCHES,
    MATCHING_VOLUNTEERS,
    dead_letter_topic,
)
from tests.helpers import poll_until, unique
from tests.infra import Infra

GM, LCR, TV = (
    CombinedAuthority.GREATER_MANCHESTER,
    CombinedAuthority.LIVERPOOL_CITY_REGION,
    CombinedAuthority.TEES_VALLEY,
)
WM, CP, WOE = (
    CombinedAuthority.WEST_MIDLANDS,
    CombinedAuthority.CAMBRIDGESHIRE_PETERBOROUGH,
    CombinedAuthority.WEST_OF_ENGLAND,
)
OLDHAM, LIVERPOOL, WIRRAL = "E08000004", "E08000012", "E08000015"
BIRMINGHAM, COVENTRY = "E08000025", "E08000026"
MIDDLESBROUGH, PETERBOROUGH, BRISTOL = "E06000002", "E06000031", "E06000023"
TODAY = datetime.now(UTC).date()
MATCH_REGISTRY = registry_for(MATCHING_MATCHES, MATCHING_VOLUNTEERS)


E = TypeVar("E", bound=Event)


@dataclass
class Received(Generic[E]):
    topic: str
    key: str
    ce_id: str
    body: bytes
    event: E


class EventLog:
    """Everything on the matching topics (and the opt-ins' dead letters), read by an
    independent plain consumer."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(
            MATCHING_MATCHES,
            MATCHING_VOLUNTEERS,
            dead_letter_topic(ENROLMENT_EVENTS),
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: list[Received[Event]] = []
        self.dead_letters: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _run(self) -> None:
        async for record in self._consumer:
            headers = {k: v for k, v in record.headers or ()}
            if record.topic == dead_letter_topic(ENROLMENT_EVENTS):
                self.dead_letters.append({k: v.decode() for k, v in headers.items()})
                continue
            try:
                ce = MATCH_REGISTRY.decode(record.value or b"", headers)
            except EnvelopeError:
                continue  # other tests' junk on these topics
            key = (record.key or b"").decode()
            self.records.append(Received(record.topic, key, ce.id, record.value or b"", ce.data))

    def of(self, kind: type[E], where: Callable[[E], bool] = lambda _e: True) -> list[Received[E]]:
        out: list[Received[E]] = []
        for r in self.records:
            if isinstance(r.event, kind) and where(r.event):
                out.append(Received(r.topic, r.key, r.ce_id, r.body, r.event))
        return out

    async def wait_for(self, kind: type[E], where: Callable[[E], bool], what: str) -> Received[E]:
        async def probe() -> Received[E] | None:
            found = self.of(kind, where)
            return found[0] if found else None

        received = await poll_until(probe, timeout_s=30, what=what)
        assert received is not None
        return received


@dataclass
class Harness:
    infra: Infra
    settings: MatchingSettings
    key: str
    db: Any
    producer: AIOKafkaProducer
    events: EventLog
    app: FastAPI | None = None
    client: httpx.AsyncClient | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def http(self) -> httpx.AsyncClient:
        assert self.client is not None
        return self.client

    @property
    def context(self) -> MatchingContext:
        assert self.app is not None
        context: MatchingContext = self.app.state.runtime.state["matching"]
        return context

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def start_app(self) -> None:
        self.app = create_app(self.settings)
        self._stack = contextlib.AsyncExitStack()
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        transport = httpx.ASGITransport(app=self.app)
        self.client = await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://testserver")
        )
        await self.await_consumer_attached()

    async def stop_app(self) -> None:
        await self._stack.aclose()
        self.app = self.client = None

    async def await_consumer_attached(self) -> None:
        """The consumer starts at the topic's end: send probes until one arrives."""
        seen: list[str] = []

        async def probe() -> bool:
            learner = unique("probe")
            seen.append(learner)
            await self.opt_in(learner, CP, PETERBOROUGH, availability=("sun-eve",))
            await asyncio.sleep(0.5)
            found: int = await self.db.participants.count_documents({"_id": {"$in": seen}})
            return found > 0

        await poll_until(probe, timeout_s=60, interval_s=0, what="the consumer to attach")

    async def opt_in(
        self,
        learner: str,
        authority: CombinedAuthority,
        local_authority: str,
        *,
        availability: tuple[str, ...] = ("mon-am",),
        consent: bool = True,
        background: Background | None = None,
        sex: Sex = Sex.FEMALE,
        gender_preference: Sex | None = None,
        ce_id: str | None = None,
    ) -> CloudEvent[ParticipantOptedIn]:
        event = CloudEvent(
            data=ParticipantOptedIn(
                enrolment_id=unique("enr"),
                learner=learner,
                provider_ukprn="10000001",
                combined_authority=authority,
                local_authority=local_authority,
                programme=Programme.ESOL,
                consent=Consent(matching=consent),
                age_band=AgeBand.AGE_25_34,
                sex=sex,
                gender_preference=gender_preference,
                languages=("ar",),
                availability=availability,
                interests=("cooking",),
                background=background
                or Background(
                    ethnicity=Ethnicity.OTHER_ARAB, religion=Religion.MUSLIM, country_of_birth="SY"
                ),
                opted_in_at=datetime.now(UTC),
            ),
            source="/tests/enrolment",
            id=ce_id or unique("ce"),
        )
        await self.producer.send_and_wait(
            ENROLMENT_EVENTS,
            event.body(),
            key=learner.encode(),
            headers=[(k, v.encode()) for k, v in event.headers().items()],
        )
        return event

    async def volunteer(
        self,
        local_authority: str,
        *,
        availability: list[str] | None = None,
        capacity: int = 1,
        key: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "local_authority": local_authority,
            "capacity": capacity,
            "dbs_expires_on": (TODAY + timedelta(days=365)).isoformat(),
            "availability": availability or ["mon-am"],
            "languages": ["en"],
            "interests": ["cooking"],
            "gender": "F",
            "age_band": "50-64",
            "consent_to_match_on_background": True,
            "background": {
                "ethnicity": "white_british",
                "religion": "christian",
                "country_of_birth": "GB",
            },
            **extra,
        }
        return await self.http.post("/v1/volunteers", json=body, headers=self.auth(key))

    async def proposal_for(self, participant: str) -> MatchProposed:
        received = await self.events.wait_for(
            MatchProposed, lambda e: e.participant == participant, f"a proposal for {participant}"
        )
        return received.event

    async def runs_committed(self, authority: CombinedAuthority) -> float:
        text = (await self.http.get("/metrics")).text
        prefix = (
            "matching_optimiser_runs_total{"
            f'combined_authority="{authority.value}",outcome="committed"}} '
        )
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def await_runs(self, authority: CombinedAuthority, n: int) -> None:
        start = await self.runs_committed(authority)

        async def enough() -> bool:
            return await self.runs_committed(authority) >= start + n

        await poll_until(enough, timeout_s=20, what=f"{n} optimiser runs for {authority.value}")

    async def outbox_drained(self) -> None:
        async def drained() -> bool:
            pending: int = await self.db.outbox.count_documents({"pending": True})
            return pending == 0

        await poll_until(drained, timeout_s=20, what="the outbox to drain")


@pytest_asyncio.fixture(scope="module")
async def harness(infra: Infra) -> AsyncIterator[Harness]:
    settings = MatchingSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=SecretStr(infra.mongodb_url),
        mongodb_database=unique("cg_matching_it").replace("-", "_"),
        consumer_group=unique("matching-it"),
        consumer_offset_reset="latest",
        consumer_session_timeout_ms=6000,
        consumer_rebalance_timeout_ms=6000,
        batch_threshold=50,
        batch_window_s=0.5,
        scheduler_tick_s=0.2,
        dbs_check_interval_s=0.5,
        outbox_poll_interval_s=0.2,
        lease_ttl_s=5,
    )
    _, key = await admin.register_coordinator(settings, "IT coordinator", list(CombinedAuthority))
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await producer.start()
    events = EventLog(infra.kafka_bootstrap_servers)
    await events.start()
    h = Harness(infra, settings, key, mongo[settings.database_name], producer, events)
    try:
        await h.start_app()
        yield h
    finally:
        if h.app is not None:
            await h.stop_app()
        await events.stop()
        await producer.stop()
        await mongo.close()


async def test_opt_in_is_proposed_confirmed_and_ended_with_events(harness: Harness) -> None:
    h = harness
    created = await h.volunteer(OLDHAM)
    assert created.status_code == 201, created.text
    volunteer = created.json()
    assert volunteer["combined_authority"] == GM.value and volunteer["background_recorded"]
    assert "background" not in volunteer and "ethnicity" not in created.text

    # The volunteer event never carries background fields.
    registered = await h.events.wait_for(
        VolunteerRegistered,
        lambda e: e.volunteer_id == volunteer["volunteer_id"],
        "VolunteerRegistered",
    )
    for forbidden in (b"ethnicity", b"religion", b"country_of_birth", b"white_british"):
        assert forbidden not in registered.body

    # An opt-in, delivered twice with the same ce_id (redelivery), plus a participant
    # without consent whose (wrongly present) background must not be stored.
    # A poison opt-in first (a West Midlands borough claimed for Greater Manchester):
    # dead-lettered, and it does not hold up the good ones behind it.
    poison = await h.opt_in(unique("learner"), GM, "E08000025")
    learner, no_consent = unique("learner"), unique("learner")
    first = await h.opt_in(learner, GM, OLDHAM)
    await h.opt_in(learner, GM, OLDHAM, ce_id=first.id)
    await h.opt_in(no_consent, GM, OLDHAM, availability=("tue-eve",), consent=False)

    proposed = await h.proposal_for(learner)
    assert proposed.volunteer_id == volunteer["volunteer_id"]
    assert proposed.local_authority == OLDHAM and proposed.enrolment_id == first.data.enrolment_id
    assert set(proposed.bridging_dimensions) == {
        "ethnicity_group",
        "religion",
        "country_of_birth",
        "age_band",
    }
    assert proposed.shared_slots == ("mon-am",) and proposed.shared_interests == ("cooking",)
    assert proposed.score > 0 and "Same borough (Oldham)" in proposed.explanation

    # Stored state and published event agree: the event id is fixed in the outbox row.
    received = h.events.of(MatchProposed, lambda e: e.participant == learner)
    assert len(received) == 1 and received[0].key == OLDHAM
    row = await h.db.outbox.find_one({"messages.id": received[0].ce_id})
    assert row is not None
    (message,) = [m for m in row["messages"] if m["id"] == received[0].ce_id]
    assert json.loads(message["body"])["match_id"] == proposed.match_id
    assert await h.db.matches.count_documents({"_id": proposed.match_id}) == 1
    assert await h.db.participants.count_documents({"_id": learner}) == 1
    assert await h.db.inbox.count_documents({"_id": first.id}) == 1
    stored = await h.db.participants.find_one({"_id": no_consent})
    assert stored is not None and stored["background"] is None
    assert not stored["consent_matching"]

    async def dead_lettered() -> dict[str, str] | None:
        found = [d for d in h.events.dead_letters if d.get("ce_id") == poison.id]
        return found[0] if found else None

    dead = await poll_until(dead_lettered, what="the poison opt-in to be dead-lettered")
    assert dead is not None
    assert dead["dlq_error_kind"] == "poison" and "not in combined authority" in dead["dlq_error"]
    assert await h.db.participants.count_documents({"_id": poison.data.learner}) == 0

    listed = await h.http.get(
        "/v1/matches", params={"local_authority": OLDHAM, "status": "proposed"}, headers=h.auth()
    )
    assert listed.status_code == 200
    assert proposed.match_id in [m["match_id"] for m in listed.json()["items"]]

    decided = await h.http.post(
        f"/v1/matches/{proposed.match_id}/decision", json={"decision": "accept"}, headers=h.auth()
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "confirmed"
    confirmed = await h.events.wait_for(
        MatchConfirmed, lambda e: e.match_id == proposed.match_id, "MatchConfirmed"
    )
    assert confirmed.event.cross_background and confirmed.key == OLDHAM

    again = await h.http.post(
        f"/v1/matches/{proposed.match_id}/decision", json={"decision": "accept"}, headers=h.auth()
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"

    ended = await h.http.post(
        f"/v1/matches/{proposed.match_id}/end",
        json={"reason": "programme finished", "meetings_count": 6},
        headers=h.auth(),
    )
    assert ended.status_code == 200, ended.text
    end_event = await h.events.wait_for(
        MatchEnded, lambda e: e.match_id == proposed.match_id, "MatchEnded"
    )
    assert end_event.event.meetings_count == 6 and end_event.event.reason == "programme finished"


async def test_declined_participant_returns_to_pool_and_pair_is_never_reproposed(
    harness: Harness,
) -> None:
    h = harness
    first_volunteer = (await h.volunteer(LIVERPOOL, availability=["mon-pm"])).json()
    learner = unique("learner")
    await h.opt_in(learner, LCR, LIVERPOOL, availability=("mon-pm",))
    proposed = await h.proposal_for(learner)
    assert proposed.volunteer_id == first_volunteer["volunteer_id"]

    missing_reason = await h.http.post(
        f"/v1/matches/{proposed.match_id}/decision", json={"decision": "decline"}, headers=h.auth()
    )
    assert missing_reason.status_code == 422
    declined = await h.http.post(
        f"/v1/matches/{proposed.match_id}/decision",
        json={"decision": "decline", "reason": "coordinator knows they have met"},
        headers=h.auth(),
    )
    assert declined.status_code == 200, declined.text
    event = await h.events.wait_for(
        MatchDeclined, lambda e: e.match_id == proposed.match_id, "MatchDeclined"
    )
    assert event.event.reason == "coordinator knows they have met"

    pool = await h.http.get("/v1/pool", params={"combined_authority": LCR.value}, headers=h.auth())
    waiting = {p["participant"]: p for p in pool.json()[0]["waiting"]}
    assert waiting[learner]["declined_count"] == 1
    assert pool.json()[0]["volunteers_available"] == 1

    # The only volunteer is free again and the participant waits, yet runs after the
    # decline never pair them again.
    await h.await_runs(LCR, 2)
    assert len(h.events.of(MatchProposed, lambda e: e.participant == learner)) == 1

    # A new volunteer in a neighbouring borough gets the proposal instead.
    second_volunteer = (await h.volunteer(WIRRAL, availability=["mon-pm"])).json()
    rematched = await h.events.wait_for(
        MatchProposed,
        lambda e: e.participant == learner and e.match_id != proposed.match_id,
        "a second proposal",
    )
    assert rematched.event.volunteer_id == second_volunteer["volunteer_id"]
    assert "Neighbouring boroughs (Wirral and Liverpool)" in rematched.event.explanation


async def test_lapsed_dbs_pauses_volunteer_once_and_flags_their_matches(harness: Harness) -> None:
    h = harness
    volunteer = (await h.volunteer(MIDDLESBROUGH, availability=["wed-am"])).json()
    learner = unique("learner")
    await h.opt_in(learner, TV, MIDDLESBROUGH, availability=("wed-am",))
    proposed = await h.proposal_for(learner)
    accepted = await h.http.post(
        f"/v1/matches/{proposed.match_id}/decision", json={"decision": "accept"}, headers=h.auth()
    )
    assert accepted.status_code == 200

    lapsed_on = TODAY - timedelta(days=1)
    updated = await h.volunteer(
        MIDDLESBROUGH,
        availability=["wed-am"],
        capacity=2,
        volunteer_id=volunteer["volunteer_id"],
        dbs_expires_on=lapsed_on.isoformat(),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["paused"] is True

    expired = await h.events.wait_for(
        VolunteerDbsExpired,
        lambda e: e.volunteer_id == volunteer["volunteer_id"],
        "VolunteerDbsExpired",
    )
    assert expired.event.paused_match_ids == (proposed.match_id,)
    assert expired.event.dbs_expired_on == lapsed_on
    assert h.events.of(VolunteerUpdated, lambda e: e.volunteer_id == volunteer["volunteer_id"])
    match = await h.http.get(f"/v1/matches/{proposed.match_id}", headers=h.auth())
    assert match.json()["flags"] == ["volunteer_dbs_expired"]

    # The periodic check finds nothing more to announce; the event exists once.
    assert await h.context.service.check_dbs() == 0
    await h.outbox_drained()
    assert (
        len(h.events.of(VolunteerDbsExpired, lambda e: e.volunteer_id == volunteer["volunteer_id"]))
        == 1
    )

    # No new proposals for a paused volunteer, though they have a free place.
    other = unique("learner")
    await h.opt_in(other, TV, MIDDLESBROUGH, availability=("wed-am",))

    async def waiting() -> bool:
        doc = await h.db.participants.find_one({"_id": other})
        return doc is not None

    await poll_until(waiting, what="the second participant to be in the pool")
    outcome = await h.context.service.run_batch(TV)
    assert outcome.committed and outcome.proposals == ()


async def test_coordinators_act_only_within_their_combined_authorities(harness: Harness) -> None:
    h = harness
    await h.volunteer(BRISTOL, availability=["fri-pm"])
    learner = unique("learner")
    await h.opt_in(learner, WOE, BRISTOL, availability=("fri-pm",))
    proposed = await h.proposal_for(learner)

    _, wm_key = await admin.register_coordinator(h.settings, "WM only", [WM])
    store = ApiKeyStore(h.db["api_keys"])
    provider_key = new_api_key()
    await store.add_key(
        Principal(principal_id=unique("prov"), name="p", role=Role.PROVIDER, ukprn="10000001"),
        provider_key,
    )
    wm = h.auth(wm_key)

    assert (
        await h.http.get("/v1/matches", params={"local_authority": BRISTOL}, headers=wm)
    ).status_code == 403
    own = await h.http.get("/v1/matches", headers=wm)
    assert own.status_code == 200
    assert all(m["combined_authority"] == WM.value for m in own.json()["items"])
    assert (await h.http.get(f"/v1/matches/{proposed.match_id}", headers=wm)).status_code == 404
    for path, body in (
        ("decision", {"decision": "accept"}),
        ("end", {"reason": "x", "meetings_count": 0}),
    ):
        r = await h.http.post(f"/v1/matches/{proposed.match_id}/{path}", json=body, headers=wm)
        assert r.status_code == 404, r.text
    assert (await h.volunteer(BRISTOL, key=wm_key)).status_code == 403
    assert (
        await h.http.get("/v1/pool", params={"combined_authority": WOE.value}, headers=wm)
    ).status_code == 403

    assert (await h.http.get("/v1/matches")).status_code == 401
    assert (await h.http.get("/v1/matches", headers=h.auth("cg_not-a-key"))).status_code == 401
    assert (await h.http.get("/v1/matches", headers=h.auth(provider_key))).status_code == 403

    # The match is untouched and still visible to a coordinator in scope.
    mine = await h.http.get(f"/v1/matches/{proposed.match_id}", headers=h.auth())
    assert mine.json()["status"] == "proposed"

    bad = await h.volunteer(BRISTOL, availability=["friday"], capacity=0)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"availability.0", "capacity"}


async def test_admin_seed_demo_is_idempotent_and_register_coordinator_prints_a_key(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    h = harness
    demo_key = new_api_key()
    monkeypatch.setenv("COMMONGROUND_MONGODB_URL", h.infra.mongodb_url)
    monkeypatch.setenv("MATCHING_MONGODB_DATABASE", h.settings.database_name)
    monkeypatch.setenv("COMMONGROUND_DEMO_COORDINATOR_KEY", demo_key)
    for _ in range(2):
        assert await asyncio.to_thread(admin.main, ["seed-demo"]) == 0
    assert await h.db.api_keys.count_documents({"principal_id": admin.DEMO_COORDINATOR_ID}) == 1
    pools = await h.http.get("/v1/pool", headers=h.auth(demo_key))
    assert {p["combined_authority"] for p in pools.json()} == {ca.value for ca in CombinedAuthority}

    capsys.readouterr()
    code = await asyncio.to_thread(
        admin.main,
        ["register-coordinator", "--name", "Tees team", "--combined-authority", TV.value],
    )
    assert code == 0
    printed = capsys.readouterr().out
    key = printed.rsplit(": ", 1)[1].strip()
    assert key.startswith("cg_")
    tees = await h.http.get("/v1/pool", headers=h.auth(key))
    assert [p["combined_authority"] for p in tees.json()] == [TV.value]


async def test_meetings_are_recorded_by_coordinators_and_volunteers_with_clear_refusals(
    harness: Harness,
) -> None:
    h = harness
    volunteer = (await h.volunteer(BIRMINGHAM, availability=["sat-am"])).json()
    bystander = (await h.volunteer(COVENTRY, availability=["sat-eve"])).json()
    learner = unique("learner")
    await h.opt_in(learner, WM, BIRMINGHAM, availability=("sat-am",))
    proposed = await h.proposal_for(learner)
    path = f"/v1/matches/{proposed.match_id}/check-ins"
    today = {"met_on": TODAY.isoformat()}

    not_yet = await h.http.post(path, json=today, headers=h.auth())
    assert not_yet.status_code == 409, not_yet.text
    assert not_yet.headers["content-type"] == "application/problem+json"
    assert not_yet.json()["type"].endswith("/invalid-transition")

    accepted = await h.http.post(
        f"/v1/matches/{proposed.match_id}/decision", json={"decision": "accept"}, headers=h.auth()
    )
    assert accepted.status_code == 200
    assert accepted.json()["health"]["state"] == "on_track"
    confirmed = await h.events.wait_for(
        MatchConfirmed, lambda e: e.match_id == proposed.match_id, "MatchConfirmed"
    )

    issued = await h.http.post(f"/v1/volunteers/{volunteer['volunteer_id']}/key", headers=h.auth())
    assert issued.status_code == 201 and issued.headers["cache-control"] == "no-store"
    volunteer_key = issued.json()["api_key"]
    other_key = (
        await h.http.post(f"/v1/volunteers/{bystander['volunteer_id']}/key", headers=h.auth())
    ).json()["api_key"]

    # The volunteer records today's meeting; the coordinator's record of the same day
    # is the same check-in (200, nothing new published).
    mine = await h.http.post(path, json=today, headers=h.auth(volunteer_key))
    assert mine.status_code == 201, mine.text
    assert mine.json()["created"] and mine.json()["check_in"]["recorded_by"] == "volunteer"
    assert mine.json()["health"] == {
        "state": "on_track",
        "days_since_contact": 0,
        "last_met_on": TODAY.isoformat(),
        "check_ins": 1,
    }
    again = await h.http.post(path, json=today, headers=h.auth())
    assert again.status_code == 200 and not again.json()["created"]
    assert again.json()["check_in"] == mine.json()["check_in"]

    event = await h.events.wait_for(
        MatchCheckInRecorded, lambda e: e.match_id == proposed.match_id, "MatchCheckInRecorded"
    )
    assert event.key == BIRMINGHAM and event.topic == MATCHING_MATCHES
    assert event.event.met_on == TODAY and event.event.recorded_by == "volunteer"
    assert event.event.match_started_at == confirmed.event.confirmed_at
    assert event.event.participant == learner

    listed = await h.http.get(path, headers=h.auth(volunteer_key))
    assert [c["met_on"] for c in listed.json()] == [TODAY.isoformat()]
    match = (await h.http.get(f"/v1/matches/{proposed.match_id}", headers=h.auth())).json()
    assert match["health"]["check_ins"] == 1

    # Bad input: each refusal is problem+json naming the rule.
    async def refused(
        body: dict[str, str], key: str | None, match_path: str = path
    ) -> tuple[int, str]:
        r = await h.http.post(match_path, json=body, headers=h.auth(key))
        assert r.headers["content-type"] == "application/problem+json", r.text
        return r.status_code, r.json()["type"].rsplit("/", 1)[1]

    yesterday = {"met_on": (TODAY - timedelta(days=1)).isoformat()}
    tomorrow = {"met_on": (TODAY + timedelta(days=1)).isoformat()}
    _, wm_only = await admin.register_coordinator(h.settings, "GM only", [GM])
    assert await refused(yesterday, None) == (422, "meeting-before-match")
    assert await refused(tomorrow, volunteer_key) == (422, "meeting-in-future")
    assert await refused(today, other_key) == (403, "not-your-match")
    assert await refused(today, wm_only) == (404, "match-not-found")
    assert await refused(today, None, "/v1/matches/match-unknown/check-ins") == (
        404,
        "match-not-found",
    )
    assert await refused(today, volunteer_key, "/v1/matches/match-unknown/check-ins") == (
        404,
        "match-not-found",
    )
    assert (await refused({"met_on": "someday"}, None))[0] == 422
    # A volunteer key does nothing else, and a new key replaces the old one.
    assert (await h.http.get("/v1/matches", headers=h.auth(volunteer_key))).status_code == 403
    renewed = await h.http.post(f"/v1/volunteers/{volunteer['volunteer_id']}/key", headers=h.auth())
    assert renewed.status_code == 201
    assert (await h.http.get(path, headers=h.auth(volunteer_key))).status_code == 401
    assert (await h.http.get(path, headers=h.auth(renewed.json()["api_key"]))).status_code == 200
    unknown = await h.http.post("/v1/volunteers/vol-nobody/key", headers=h.auth())
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/volunteer-not-found")
    await h.outbox_drained()
    assert len(h.events.of(MatchCheckInRecorded, lambda e: e.match_id == proposed.match_id)) == 1


async def test_waiting_participants_are_told_which_constraint_keeps_them_waiting(
    harness: Harness,
) -> None:
    h = harness
    await h.volunteer(COVENTRY, availability=["sun-pm"], capacity=1)  # female, consents
    no_slot, wants_male, first, second = (unique("learner") for _ in range(4))
    await h.opt_in(no_slot, WM, COVENTRY, availability=("sun-am",))
    await h.opt_in(wants_male, WM, COVENTRY, availability=("sun-pm",), gender_preference=Sex.MALE)
    await h.opt_in(first, WM, COVENTRY, availability=("sun-pm",))
    await h.opt_in(second, WM, COVENTRY, availability=("sun-pm",))
    proposal = await h.events.wait_for(
        MatchProposed, lambda e: e.participant in (first, second), "a proposal in Coventry"
    )
    left = second if proposal.event.participant == first else first
    expected = {no_slot: "no_shared_slot", wants_male: "gender_preference", left: "no_capacity"}

    async def diagnosed() -> dict[str, Any] | None:
        r = await h.http.get(
            "/v1/pool/waiting", params={"local_authority": COVENTRY}, headers=h.auth()
        )
        assert r.status_code == 200, r.text
        body: list[dict[str, Any]] = r.json()
        (ca,) = body
        found = {w["participant"]: w for w in ca["waiting"]}
        if all(found.get(p, {}).get("reason") == reason for p, reason in expected.items()):
            return ca
        return None

    ca = await poll_until(diagnosed, what="the three reasons")
    assert ca is not None and ca["combined_authority"] == WM.value
    waiting = {w["participant"]: w for w in ca["waiting"]}
    assert proposal.event.participant not in waiting  # proposed: no longer waiting
    assert ca["reasons"]["no_capacity"] >= 1 and set(ca["reasons"]) >= set(expected.values())
    full = waiting[left]
    assert full["reason_label"].startswith("No capacity")
    assert [s["reason"] for s in full["funnel"]][-1] == "no_capacity"
    assert full["funnel"][-1]["remaining"] == 0 and full["funnel"][1]["remaining"] >= 1
    assert "West Midlands" in full["explanation"] and full["days_waiting"] == 0
    for text in (str(waiting), str(ca)):  # never any background
        assert "ethnicity" not in text and "religion" not in text

    # The same reasons with the waiting list, and as CSV.
    pool = await h.http.get("/v1/pool", params={"combined_authority": WM.value}, headers=h.auth())
    reasons = {p["participant"]: p["reason"] for p in pool.json()[0]["waiting"]}
    assert {p: reasons[p] for p in expected} == expected
    csv_response = await h.http.get(
        "/v1/pool/waiting.csv", params={"local_authority": COVENTRY}, headers=h.auth()
    )
    assert csv_response.headers["content-type"].startswith("text/csv")
    header, *rows = csv_response.text.splitlines()
    assert header.startswith("combined_authority,local_authority,participant,waiting_since")
    assert any(
        row.startswith(f"{WM.value},{COVENTRY},{no_slot},") and ",no_shared_slot," in row
        for row in rows
    )

    # Scope: outside the key's authorities, and a borough outside the named authority.
    _, gm_key = await admin.register_coordinator(h.settings, "GM waiting", [GM])
    outside = await h.http.get(
        "/v1/pool/waiting", params={"local_authority": COVENTRY}, headers=h.auth(gm_key)
    )
    assert outside.status_code == 403
    mismatch = await h.http.get(
        "/v1/pool/waiting",
        params={"local_authority": COVENTRY, "combined_authority": GM.value},
        headers=h.auth(),
    )
    assert (
        mismatch.status_code == 422
        and mismatch.headers["content-type"] == "application/problem+json"
    )


async def test_restart_keeps_pool_and_pending_proposals_exactly(harness: Harness) -> None:
    h = harness
    await h.volunteer(PETERBOROUGH, availability=["thu-pm"])
    # A second volunteer nobody can be paired with keeps optimiser runs going.
    await h.volunteer(PETERBOROUGH, availability=["thu-am"])
    first, second = unique("learner"), unique("learner")
    await h.opt_in(first, CP, PETERBOROUGH, availability=("thu-pm",))
    await h.opt_in(second, CP, PETERBOROUGH, availability=("thu-pm",))
    pending = await h.events.wait_for(
        MatchProposed, lambda e: e.participant in (first, second), "a Peterborough proposal"
    )
    await h.outbox_drained()

    async def snapshot() -> dict[str, Any]:
        pool = await h.http.get("/v1/pool", headers=h.auth())
        proposals = await h.http.get(
            "/v1/matches", params={"status": "proposed", "limit": 500}, headers=h.auth()
        )
        assert pool.status_code == proposals.status_code == 200
        return {"pool": pool.json(), "proposed": proposals.json()["items"]}

    before = await snapshot()
    waiting = {p["participant"] for ca in before["pool"] for p in ca["waiting"]}
    assert {first, second} - {pending.event.participant} <= waiting
    assert pending.event.match_id in [m["match_id"] for m in before["proposed"]]

    await h.stop_app()
    await h.start_app()  # a new instance: new clients, same database and consumer group

    after = await snapshot()

    # The probe opt-in the new instance needed to prove its consumer is attached is the
    # only difference allowed: take it out before comparing.
    def without_probes(snap: dict[str, Any]) -> str:
        for ca in snap["pool"]:
            ca["waiting"] = [p for p in ca["waiting"] if not p["participant"].startswith("probe")]
        return json.dumps(snap, sort_keys=True)

    assert without_probes(after) == without_probes(before)

    # And the new instance's own optimiser runs change nothing either (no duplicates).
    await h.await_runs(CP, 2)
    assert without_probes(await snapshot()) == without_probes(before)
    await h.outbox_drained()
    proposed_to = [r.event.participant for r in h.events.of(MatchProposed)]
    assert proposed_to.count(first) + proposed_to.count(second) == 1
