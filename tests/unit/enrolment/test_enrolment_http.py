"""The HTTP adapter over in-memory fakes: backpressure, size limits, problem details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.enrolment.entrypoints import http
from services.enrolment.entrypoints.dependencies import STATE_KEY, EnrolmentContext
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases.intake import EnrolmentService, IntakeMetrics
from shared.auth import Principal, Role
from shared.outbox import Delivered, OutboxRelay, RelayMetrics
from shared.problems import install_problem_handlers
from shared.telemetry import Telemetry
from tests.unit.enrolment.enrolment_fakes import (
    NOW,
    PROVIDER,
    PSEUDONYMS,
    FakeEnrolments,
    FakeProviders,
    submission,
)
from tests.unit.outbox_fakes import FakeOutboxStore

KEY = "cg_unit-test-key"


class FakeKeys:
    async def authenticate(self, key: str) -> Principal | None:
        if key != KEY:
            return None
        return Principal(
            principal_id=PROVIDER.provider_id,
            name="Unit College",
            role=Role.PROVIDER,
            ukprn=PROVIDER.ukprn,
        )


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = EnrolmentSettings(
        outbox_backlog_limit=10, outbox_retry_after_s=7, max_item_body_bytes=4096
    )
    telemetry = Telemetry(service_name="enrolment-http-unit")
    repo = FakeEnrolments()
    relay = OutboxRelay(FakeOutboxStore(), _never, settings, RelayMetrics(telemetry))
    service = EnrolmentService(
        repo.unit_of_work,
        FakeProviders(PROVIDER),
        PSEUDONYMS,
        IntakeMetrics(telemetry),
        clock=lambda: NOW,
    )
    app = FastAPI()
    install_problem_handlers(app)
    http.install_validation_handler(app)
    app.include_router(http.router)
    context = EnrolmentContext(settings, service, FakeKeys(), relay)  # type: ignore[arg-type]
    app.state.runtime = SimpleNamespace(state={STATE_KEY: context})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        yield client, SimpleNamespace(repo=repo, relay=relay)


async def _never(_message: Any) -> Delivered:
    raise AssertionError("nothing is published in these tests")


AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_backpressure_refuses_intake_with_retry_after(api: Any) -> None:
    client, parts = api
    parts.relay.backlog = 11
    response = await client.post("/v1/enrolments", json=submission(), headers=AUTH)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.headers["content-type"] == "application/problem+json"
    assert parts.repo.docs == {}
    batch = await client.post("/v1/enrolments/batch", json={"items": [submission()]}, headers=AUTH)
    assert batch.status_code == 503
    parts.relay.backlog = 10
    accepted = await client.post("/v1/enrolments", json=submission(), headers=AUTH)
    assert accepted.status_code == 201


async def test_single_item_bodies_are_limited(api: Any) -> None:
    client, _ = api
    response = await client.post(
        "/v1/enrolments", json=submission(family_name="x" * 5000), headers=AUTH
    )
    assert response.status_code == 413
    assert response.json()["type"].endswith("/payload-too-large")


async def test_progress_errors_point_at_the_field_not_the_union_tag(api: Any) -> None:
    client, _ = api
    created = await client.post("/v1/enrolments", json=submission(), headers=AUTH)
    url = f"/v1/enrolments/{created.json()['enrolment_id']}/progress"
    missing = await client.post(url, json={"kind": "completion"}, headers=AUTH)
    assert missing.status_code == 422
    assert sorted(e["pointer"] for e in missing.json()["errors"]) == ["/completed_on", "/outcome"]
    unknown_kind = await client.post(url, json={"kind": "graduation"}, headers=AUTH)
    assert unknown_kind.status_code == 422
    assert unknown_kind.json()["errors"][0]["pointer"] == "/kind"
    early = await client.post(
        url,
        json={
            "kind": "attendance",
            "period_start": "2025-01-01",
            "period_end": "2025-01-31",
            "sessions_planned": 4,
            "sessions_attended": 4,
        },
        headers=AUTH,
    )
    assert early.status_code == 422
    assert [e["pointer"] for e in early.json()["errors"]] == ["/period_start", "/period_end"]


async def test_ids_that_cannot_exist_are_422_and_unknown_ones_404(api: Any) -> None:
    client, _ = api
    assert (await client.get("/v1/enrolments/not-an-id", headers=AUTH)).status_code == 422
    unknown = await client.get("/v1/enrolments/enr_" + "0" * 32, headers=AUTH)
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("/enrolment-not-found")


async def test_each_intake_outcome_gets_its_status_and_problem_at_the_edge(api: Any) -> None:
    """intake reports what happened (ItemStatus and field errors); the routes choose the
    status and the problem, and a batch item's http_status is what the single POST gets."""
    client, _ = api
    items = [
        submission(learner_ref="A1"),
        submission(learner_ref="A1"),  # the same again
        submission(learner_ref="A1", planned_hours=12),  # same key, different details
        submission(learner_ref="A3", local_authority="E08000025"),  # borough not in the area
        submission(learner_ref="A4", combined_authority="E47000007", local_authority="E08000025"),
    ]
    singles = [await client.post("/v1/enrolments", json=item, headers=AUTH) for item in items]
    assert [r.status_code for r in singles] == [201, 200, 409, 422, 403]
    problems = [r.json() for r in singles[2:]]
    assert all(r.headers["content-type"] == "application/problem+json" for r in singles[2:])
    base = "https://commonground.example/problems/"
    assert [(p["type"], p["title"], p["status"]) for p in problems] == [
        (base + "conflicting-duplicate", "Conflict", 409),
        (base + "validation-failed", "Validation failed", 422),
        (base + "not-contracted", "Forbidden", 403),
    ]
    assert problems[1]["detail"] == (
        "The submission breaks the enrolment rules; see errors for each field."
    )
    assert problems[2]["detail"] == "The provider is not contracted for this combined authority."
    assert problems[0]["detail"] == problems[0]["errors"][0]["message"]
    for problem in problems:
        assert problem["errors"]
        for error in problem["errors"]:
            assert list(error) == ["pointer", "field", "message", "type", "code"]
    assert problems[2]["errors"][0]["code"] == "not_contracted"

    batch = await client.post(
        "/v1/enrolments/batch",
        json={"items": [submission(learner_ref="B1"), *items[1:], "not an object"]},
        headers=AUTH,
    )
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["http_status"] for r in results] == [201, 200, 409, 422, 403, 422]
    assert [r["result"] for r in results] == [
        "created",
        "duplicate",
        "conflict",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert results[4]["errors"][0]["pointer"].startswith("/items/4/")
