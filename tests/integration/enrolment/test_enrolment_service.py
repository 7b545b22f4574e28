"""The enrolment service against the real broker and database: HTTP single + batch intake,
progress and the lifecycle, authorisation, Kafka intake (valid, invalid, garbage), and
that no learner identifier ever reaches a topic.

One app lifespan and one topic collector serve the whole module (consumer-group joins
are the slow part on the embedded broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app
from services.enrolment.settings import EnrolmentSettings
from shared.contracts.enrolment import EnrolmentSubmission
from shared.record_signing import sign_record
from shared.topics import (
    ENROLMENT_EVENTS,
    ENROLMENT_INBOUND,
    ENROLMENT_REJECTED,
    dead_letter_topic,
)
from tests.helpers import poll_until, running_app, send_signed, unique
from tests.infra import Infra
from tests.security.sealed import open_sealed

PROBLEM_JSON = "application/problem+json"
DLQ = dead_letter_topic(ENROLMENT_INBOUND)


def _token(n: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(random.choices(alphabet, k=n))


def new_ukprn() -> str:
    return "1" + _token(7, string.digits)


@dataclass
class Sensitive:
    """Every personal value this module submits: none may appear on any topic."""

    values: set[str] = field(default_factory=set)


SENSITIVE = Sensitive()


def submission(**overrides: Any) -> dict[str, Any]:
    """A valid ESOL submission (Oldham, Greater Manchester) with distinctive identifiers."""
    learner_ref = "L" + _token(11)
    dob = f"19{random.randint(50, 89)}-0{random.randint(1, 9)}-{random.randint(10, 28)}"
    doc: dict[str, Any] = {
        "submission_ref": unique("row"),
        "learner_ref": learner_ref,
        "given_names": "Zainab " + _token(6, string.ascii_lowercase),
        "family_name": "Q" + _token(8, string.ascii_lowercase),
        "postcode": "OL9 7ZZ",
        "date_of_birth": dob,
        "sex": "F",
        "ethnicity": "asian_pakistani",
        "religion": "muslim",
        "country_of_birth": "PK",
        "first_language": "ur",
        "year_of_arrival": 2018,
        "combined_authority": "E47000001",
        "local_authority": "E08000004",
        "learning_aim_ref": "Z" + _token(7),
        "programme": "esol",
        "level": "entry_1",
        "start_date": "2025-09-15",
        "planned_end_date": "2026-07-17",
        "planned_hours": 150,
        "fund_model": 35,
        "consent": {"matching": True, "research": False},
        "wants_conversation_partner": False,
    }
    doc.update(overrides)
    for name in ("learner_ref", "given_names", "family_name", "date_of_birth"):
        SENSITIVE.values.add(str(doc[name]))
    return doc


def body_has(name: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda record: bool(record["body"].get(name) == value)


class TopicCollector:
    """Reads the enrolment output topics from the beginning into memory."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def events(self, topic: str, ce_type: str | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self.records:
            if r.topic != topic:
                continue
            headers = {k: v.decode(errors="replace") for k, v in r.headers}
            if ce_type and headers.get("ce_type") != f"org.commonground.{ce_type}.v1":
                continue
            body = json.loads(r.value) if topic != DLQ else None
            out.append({"key": r.key, "headers": headers, "body": body, "raw": r.value})
        return out

    async def wait_for(
        self,
        topic: str,
        match: Callable[[dict[str, Any]], bool],
        ce_type: str | None = None,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]]:
            hits = [e for e in self.events(topic, ce_type) if match(e)]
            return hits if len(hits) >= count else []

        return await poll_until(found, timeout_s=30, what=f"{ce_type or 'record'} on {topic}")


@dataclass
class Stack:
    client: httpx.AsyncClient
    collector: TopicCollector
    infra: Infra
    ukprn: str
    key: str
    other_ukprn: str
    other_key: str
    admin: ProviderAdmin | None = None

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest_asyncio.fixture(scope="module")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    settings = EnrolmentSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=infra.mongodb_url,
        mongodb_database=unique("cg_enrolment_it"),
        consumer_group=unique("enrolment-it"),
        outbox_poll_interval_s=0.2,
        inbound_batch_timeout_ms=50,
    )
    collector = TopicCollector(
        infra.kafka_bootstrap_servers, [ENROLMENT_EVENTS, ENROLMENT_REJECTED, DLQ]
    )
    await collector.start()
    app = create_app(settings)
    try:
        async with running_app(app) as client:
            admin = ProviderAdmin(app.state.runtime.db)
            ukprn, other_ukprn = new_ukprn(), new_ukprn()
            key = await admin.register_provider("Oldham Adult Learning", ukprn, ["E47000001"])
            other_key = await admin.register_provider(
                "Black Country College", other_ukprn, ["E47000007"]
            )
            yield Stack(client, collector, infra, ukprn, key, other_ukprn, other_key, admin)
    finally:
        await collector.stop()


async def test_single_submission_is_accepted_once_and_published_pseudonymised(
    stack: Stack,
) -> None:
    doc = submission(wants_conversation_partner=True, availability=["tue-pm"])
    first = await stack.client.post("/v1/enrolments", json=doc, headers=stack.auth())
    assert first.status_code == 201, first.text
    enrolment_id = first.json()["enrolment_id"]
    assert first.headers["location"] == f"/v1/enrolments/{enrolment_id}"

    again = await stack.client.post("/v1/enrolments", json=doc, headers=stack.auth())
    assert again.status_code == 200
    assert again.json()["enrolment_id"] == enrolment_id
    assert again.json()["result"] == "duplicate"

    changed = await stack.client.post(
        "/v1/enrolments", json={**doc, "planned_hours": 99}, headers=stack.auth()
    )
    assert changed.status_code == 409
    assert changed.headers["content-type"] == PROBLEM_JSON

    def mine(e: dict[str, Any]) -> bool:
        return bool(e["body"]["enrolment_id"] == enrolment_id)

    (accepted,) = await stack.collector.wait_for(ENROLMENT_EVENTS, mine, "EnrolmentAccepted")
    (opted_in,) = await stack.collector.wait_for(ENROLMENT_EVENTS, mine, "ParticipantOptedIn")
    learner = accepted["body"]["learner"]
    assert learner.startswith("lp_") and learner != doc["learner_ref"]
    assert accepted["key"] == learner.encode()
    assert accepted["body"]["age_band"] in ("35-49", "50-64", "65+", "25-34")
    assert accepted["headers"]["ce_source"] == "/commonground/enrolment"
    # Personal fields travel sealed under the learner's data key (crypto-shredding).
    assert opted_in["body"]["background"] is None and opted_in["body"]["sealed"]
    key_events = stack.collector.events(ENROLMENT_EVENTS, "LearnerKeyIssued")
    opened = open_sealed(key_events, opted_in["body"])
    assert opened.background is not None and opened.background.ethnicity == "asian_pakistani"
    assert opted_in["body"]["availability"] == ["tue-pm"]


async def test_batch_accepts_good_items_and_refuses_bad_ones_with_field_paths(
    stack: Stack,
) -> None:
    good = [submission(), submission(programme="functional_maths", level="level_1")]
    items: list[Any] = [
        good[0],
        submission(local_authority="E08000025"),  # Birmingham is not in Greater Manchester
        submission(sex="X", planned_hours=0),
        good[1],
        submission(combined_authority="E47000007", local_authority="E08000025"),
        submission(start_date="2025-09-15", planned_end_date="2025-09-01"),
        good[0],  # the same enrolment twice in one batch
    ]
    response = await stack.client.post(
        "/v1/enrolments/batch", json={"items": items}, headers=stack.auth()
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["summary"] == {
        "received": 7,
        "created": 2,
        "duplicate": 1,
        "conflict": 0,
        "rejected": 4,
    }
    results = body["results"]
    assert [r["http_status"] for r in results] == [201, 422, 422, 201, 403, 422, 200]
    assert [(e["pointer"], e["code"]) for e in results[1]["errors"]] == [
        ("/items/1/local_authority", "local_authority_mismatch")
    ]
    assert {e["pointer"] for e in results[2]["errors"]} == {
        "/items/2/sex",
        "/items/2/planned_hours",
    }
    assert results[4]["reason"] == "not_contracted"
    assert results[4]["errors"][0]["pointer"] == "/items/4/combined_authority"
    assert results[5]["errors"][0]["pointer"] == "/items/5/planned_end_date"
    assert results[6]["enrolment_id"] == results[0]["enrolment_id"]
    assert results[0]["submission_ref"] == good[0]["submission_ref"]

    created = {results[0]["enrolment_id"], results[3]["enrolment_id"]}
    events = await stack.collector.wait_for(
        ENROLMENT_EVENTS,
        lambda e: e["body"]["enrolment_id"] in created,
        "EnrolmentAccepted",
        count=2,
    )
    assert len(events) == 2  # the in-batch duplicate published nothing
    aims = {e["body"]["learning_aim_ref"] for e in events}
    assert aims == {good[0]["learning_aim_ref"], good[1]["learning_aim_ref"]}
    for event in events:
        assert event["body"]["learner"] not in (good[0]["learner_ref"], good[1]["learner_ref"])


async def test_request_limits_and_schema_errors_are_problems(stack: Stack) -> None:
    too_many = await stack.client.post(
        "/v1/enrolments/batch", json={"items": [{}] * 1001}, headers=stack.auth()
    )
    assert too_many.status_code == 413
    assert too_many.json()["errors"][0]["pointer"] == "/items"
    huge = await stack.client.post(
        "/v1/enrolments",
        content=b'{"learner_ref": "' + b"x" * 70_000 + b'"}',
        headers={**stack.auth(), "content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.headers["content-type"] == PROBLEM_JSON
    invalid = await stack.client.post(
        "/v1/enrolments", json={**submission(), "ethnicty": "x"}, headers=stack.auth()
    )
    assert invalid.status_code == 422
    assert [e["pointer"] for e in invalid.json()["errors"]] == ["/ethnicty"]
    openapi = (await stack.client.get("/openapi.json")).json()
    assert "EnrolmentSubmission" in openapi["components"]["schemas"]
    assert "/v1/enrolments/{enrolment_id}/progress" in openapi["paths"]


async def test_progress_follows_the_lifecycle_and_refuses_illegal_transitions(
    stack: Stack,
) -> None:
    created = await stack.client.post("/v1/enrolments", json=submission(), headers=stack.auth())
    enrolment_id = created.json()["enrolment_id"]
    url = f"/v1/enrolments/{enrolment_id}/progress"

    attendance = {
        "kind": "attendance",
        "period_start": "2025-09-15",
        "period_end": "2025-10-10",
        "sessions_planned": 8,
        "sessions_attended": 6,
        "hours_attended": 15,
    }
    applied = await stack.client.post(url, json=attendance, headers=stack.auth())
    assert applied.status_code == 202, applied.text
    replay = await stack.client.post(url, json=attendance, headers=stack.auth())
    assert replay.status_code == 200 and replay.json()["applied"] is False

    early_outcome = await stack.client.post(
        url,
        json={"kind": "outcome", "recorded_on": "2025-10-20", "outcome": 1},
        headers=stack.auth(),
    )
    assert early_outcome.status_code == 409
    assert "after completion" in early_outcome.json()["detail"]

    missing = await stack.client.post(
        url, json={"kind": "completion", "completed_on": "2025-12-01"}, headers=stack.auth()
    )
    assert missing.status_code == 422
    assert [e["pointer"] for e in missing.json()["errors"]] == ["/outcome"]

    withdrawn = await stack.client.post(
        url,
        json={"kind": "withdrawal", "withdrawn_on": "2025-11-03", "reason": 7},
        headers=stack.auth(),
    )
    assert withdrawn.status_code == 202
    assert withdrawn.json()["status"] == "withdrawn"
    assert withdrawn.json()["completion_status"] == 3

    illegal = await stack.client.post(
        url,
        json={"kind": "completion", "completed_on": "2025-12-01", "outcome": 1},
        headers=stack.auth(),
    )
    assert illegal.status_code == 409
    assert illegal.headers["content-type"] == PROBLEM_JSON
    problem = illegal.json()
    assert problem["type"].endswith("/illegal-transition")
    assert problem["detail"] == "a withdrawn enrolment cannot be completed"
    assert problem["errors"][0]["pointer"] == "/kind"

    view = await stack.client.get(f"/v1/enrolments/{enrolment_id}", headers=stack.auth())
    assert view.status_code == 200
    assert view.json()["status"] == "withdrawn"
    assert view.json()["withdrawal_reason"] == 7
    assert [h["kind"] for h in view.json()["history"]] == ["accepted", "attendance", "withdrawal"]

    def mine(e: dict[str, Any]) -> bool:
        return bool(e["body"]["enrolment_id"] == enrolment_id)

    await stack.collector.wait_for(ENROLMENT_EVENTS, mine, "EnrolmentWithdrawn")
    await stack.collector.wait_for(ENROLMENT_EVENTS, mine, "AttendanceRecorded")
    completed = stack.collector.events(ENROLMENT_EVENTS, "EnrolmentCompleted")
    assert not any(mine(e) for e in completed)


async def test_authentication_and_authorisation(stack: Stack) -> None:
    doc = submission()
    no_key = await stack.client.post("/v1/enrolments", json=doc)
    assert no_key.status_code == 401
    assert no_key.headers["content-type"] == PROBLEM_JSON
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    bad_key = await stack.client.post("/v1/enrolments", json=doc, headers=stack.auth("cg_nope"))
    assert bad_key.status_code == 401

    # The West Midlands provider may not submit for Greater Manchester.
    forbidden = await stack.client.post(
        "/v1/enrolments", json=doc, headers=stack.auth(stack.other_key)
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["errors"][0]["pointer"] == "/combined_authority"

    created = await stack.client.post("/v1/enrolments", json=doc, headers=stack.auth())
    enrolment_id = created.json()["enrolment_id"]
    theirs = await stack.client.get(
        f"/v1/enrolments/{enrolment_id}", headers=stack.auth(stack.other_key)
    )
    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == PROBLEM_JSON
    progress = await stack.client.post(
        f"/v1/enrolments/{enrolment_id}/progress",
        json={"kind": "withdrawal", "withdrawn_on": "2025-10-01", "reason": 3},
        headers=stack.auth(stack.other_key),
    )
    assert progress.status_code == 404
    own = await stack.client.get(f"/v1/enrolments/{enrolment_id}", headers=stack.auth())
    assert own.status_code == 200
    assert own.json()["submission"]["learner_ref"] == doc["learner_ref"]


async def test_kafka_intake_valid_invalid_and_garbage(stack: Stack) -> None:
    valid = submission()
    invalid = submission(local_authority="E08000025", planned_end_date="2024-01-01")
    unknown_provider = submission()
    producer = AIOKafkaProducer(bootstrap_servers=stack.infra.kafka_bootstrap_servers)
    await producer.start()
    try:
        ce = [("ce_type", EnrolmentSubmission.ce_type().encode()), ("ce_id", b"sub-1")]
        await send_signed(producer, stack.key, stack.ukprn, json.dumps(valid).encode(), ce)
        bad = await send_signed(producer, stack.key, stack.ukprn, json.dumps(invalid).encode())
        # Signed by this provider but keyed with a UKPRN nobody registered.
        stranger = await send_signed(
            producer, stack.key, "19999999", json.dumps(unknown_provider).encode()
        )
        marker = unique("garbage").encode()
        garbage = await send_signed(
            producer,
            stack.key,
            stack.ukprn,
            b"\xff\xfe not json " + marker,
            [("x-marker", marker), ("x-binary", b"\xff\xfe")],
        )
    finally:
        await producer.stop()

    (accepted,) = await stack.collector.wait_for(
        ENROLMENT_EVENTS,
        lambda e: e["body"].get("learning_aim_ref") == valid["learning_aim_ref"],
        "EnrolmentAccepted",
    )
    assert accepted["body"]["provider_ukprn"] == stack.ukprn
    assert accepted["body"]["learner"].startswith("lp_")

    (rejected,) = await stack.collector.wait_for(
        ENROLMENT_REJECTED,
        lambda e: e["body"]["submission_ref"] == invalid["submission_ref"],
        "SubmissionRejected",
    )
    assert rejected["key"] == stack.ukprn.encode()
    assert rejected["body"]["source"]["partition"] == bad.partition
    assert rejected["body"]["source"]["offset"] == bad.offset
    assert {(r["code"], r["pointer"]) for r in rejected["body"]["reasons"]} == {
        ("local_authority_mismatch", "/local_authority"),
        ("dates_out_of_order", "/planned_end_date"),
    }
    (unknown,) = await stack.collector.wait_for(
        ENROLMENT_REJECTED,
        lambda e: (
            e["body"]["source"]["offset"] == stranger.offset
            and e["body"]["source"]["partition"] == stranger.partition
        ),
        "SubmissionRejected",
    )
    assert [(r["code"], r["type"]) for r in unknown["body"]["reasons"]] == [
        ("unauthenticated", "provider_mismatch")
    ]

    (dead,) = await stack.collector.wait_for(
        DLQ, lambda e: e["headers"].get("x-marker") == marker.decode()
    )
    assert dead["raw"] == b"\xff\xfe not json " + marker
    assert dead["key"] == stack.ukprn.encode()
    assert dead["headers"]["dlq_original_topic"] == ENROLMENT_INBOUND
    assert dead["headers"]["dlq_original_partition"] == str(garbage.partition)
    assert dead["headers"]["dlq_original_offset"] == str(garbage.offset)
    assert dead["headers"]["dlq_error_kind"] == "poison"
    assert "not JSON" in dead["headers"]["dlq_error"]


async def test_kafka_intake_authenticates_who_produced_each_record(stack: Stack) -> None:
    """Issue 17, item 1: the record key only claims a provider. Provider A (contracted
    for West Midlands only) signing a record keyed with provider B's UKPRN, an unsigned
    record keyed with B, a tampered one, a stale one and one signed with a revoked key
    are all refused as unauthenticated, counted, and nothing of them is stored."""
    admin = stack.admin
    assert admin is not None
    revoked_ukprn = new_ukprn()
    revoked_key = await admin.register_provider("Revoked College", revoked_ukprn, ["E47000001"])
    assert await admin.revoke_keys(revoked_ukprn, revoke_all=True) == 1
    docs = {name: submission() for name in ("forged", "unsigned", "tampered", "stale", "revoked")}
    ok = submission()
    producer = AIOKafkaProducer(bootstrap_servers=stack.infra.kafka_bootstrap_servers)
    await producer.start()
    sent = {}
    try:
        # A signs with its own key but claims B's identity through the record key.
        sent["forged"] = await send_signed(
            producer, stack.other_key, stack.ukprn, json.dumps(docs["forged"]).encode()
        )
        sent["unsigned"] = await producer.send_and_wait(
            ENROLMENT_INBOUND, json.dumps(docs["unsigned"]).encode(), key=stack.ukprn.encode()
        )
        # Signed for one body, sent with another.
        signature = sign_record(
            stack.key, ENROLMENT_INBOUND, stack.ukprn.encode(), json.dumps(ok).encode()
        )
        sent["tampered"] = await producer.send_and_wait(
            ENROLMENT_INBOUND,
            json.dumps(docs["tampered"]).encode(),
            key=stack.ukprn.encode(),
            headers=signature,
        )
        an_hour_ago = int((time.time() - 3600) * 1000)
        sent["stale"] = await send_signed(
            producer,
            stack.key,
            stack.ukprn,
            json.dumps(docs["stale"]).encode(),
            timestamp_ms=an_hour_ago,
        )
        sent["revoked"] = await send_signed(
            producer, revoked_key, revoked_ukprn, json.dumps(docs["revoked"]).encode()
        )
        await send_signed(producer, stack.key, stack.ukprn, json.dumps(ok).encode())
    finally:
        await producer.stop()

    expected = {
        "forged": "provider_mismatch",
        "unsigned": "unsigned",
        "tampered": "bad_signature",
        "stale": "stale_signature",
        "revoked": "unknown_signing_key",
    }
    for name, meta in sent.items():

        def at(e: dict[str, Any], meta: Any = meta) -> bool:
            source = e["body"]["source"]
            return bool(source["partition"] == meta.partition and source["offset"] == meta.offset)

        (rejected,) = await stack.collector.wait_for(ENROLMENT_REJECTED, at, "SubmissionRejected")
        assert [(r["code"], r["type"]) for r in rejected["body"]["reasons"]] == [
            ("unauthenticated", expected[name])
        ], name
        # Identified by coordinates only: nothing from the unauthenticated body.
        assert rejected["body"]["submission_ref"] is None
        assert rejected["body"]["provider_ukprn"] is None
    await stack.collector.wait_for(
        ENROLMENT_EVENTS, body_has("learning_aim_ref", ok["learning_aim_ref"]), "EnrolmentAccepted"
    )
    refs = {doc["learning_aim_ref"] for doc in docs.values()}
    assert not [
        e
        for e in stack.collector.events(ENROLMENT_EVENTS)
        if e["body"].get("learning_aim_ref") in refs
    ]
    metrics = (await stack.client.get("/metrics")).text
    for reason in expected.values():
        assert f'commonground_inbound_unauthenticated_total{{reason="{reason}"}}' in metrics
    assert 'reason="unauthenticated"' in metrics


async def test_no_learner_identifier_reaches_any_topic(stack: Stack) -> None:
    # A submission with every personal field, by HTTP and by Kafka, then scan every
    # record the module saw on the events, rejected and dead-letter topics.
    http_doc = submission(wants_conversation_partner=True)
    kafka_doc = submission(wants_conversation_partner=True, consent={"matching": False})
    response = await stack.client.post("/v1/enrolments", json=http_doc, headers=stack.auth())
    assert response.status_code == 201
    producer = AIOKafkaProducer(bootstrap_servers=stack.infra.kafka_bootstrap_servers)
    await producer.start()
    try:
        await send_signed(producer, stack.key, stack.ukprn, json.dumps(kafka_doc).encode())
    finally:
        await producer.stop()
    ids = []
    for doc in (http_doc, kafka_doc):
        (accepted,) = await stack.collector.wait_for(
            ENROLMENT_EVENTS,
            body_has("learning_aim_ref", doc["learning_aim_ref"]),
            "EnrolmentAccepted",
        )
        ids.append(accepted["body"]["enrolment_id"])
    (with_consent,) = await stack.collector.wait_for(
        ENROLMENT_EVENTS, lambda e: e["body"]["enrolment_id"] == ids[0], "ParticipantOptedIn"
    )
    key_events = stack.collector.events(ENROLMENT_EVENTS, "LearnerKeyIssued")
    opened = open_sealed(key_events, with_consent["body"])
    assert opened.background is not None and opened.background.religion == "muslim"
    (no_consent,) = await stack.collector.wait_for(
        ENROLMENT_EVENTS, lambda e: e["body"]["enrolment_id"] == ids[1], "ParticipantOptedIn"
    )
    assert no_consent["body"]["consent"]["matching"] is False
    assert no_consent["body"]["background"] is None
    assert open_sealed(key_events, no_consent["body"]).background is None

    scanned = 0
    for record in stack.collector.records:
        text = b" ".join(
            [record.key or b"", record.value or b"", *(v for _, v in record.headers)]
        ).decode(errors="replace")
        if record.topic == DLQ:
            continue  # dead letters keep the original bytes for replay, by design
        if dict(record.headers).get("ce_source") != b"/commonground/enrolment":
            continue  # other tests' events share the topics (and may hold any date)
        scanned += 1
        for value in SENSITIVE.values:
            assert value not in text, f"{value!r} leaked on {record.topic}"
        assert "OL9 7ZZ" not in text
    assert scanned >= 6  # at least this test's own events: 2 accepted, 2 opt-ins, 2 keys
