"""Issue 17: security hardening, one test (or a few) per item, against the real apps.

Each test failed before its fix; see docs/security.md for the designs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from shared.ratelimit import RateLimiter
from tests.security.conftest import Platform, submission

PROBLEM_JSON = "application/problem+json"


def pointers(response: Any) -> set[str]:
    return {e["pointer"] for e in response.json().get("errors", [])}


# ------------------------------------------------------------ item 4: strict contracts


async def test_unknown_consent_keys_are_refused_not_dropped(platform: Platform) -> None:
    auth = platform.auth(platform.keys.provider_gm)
    for consent, pointer in (
        ({"matchng": True}, "/consent/matchng"),
        ({"matching": True, "$set": {"research": True}}, "/consent/$set"),
    ):
        single = await platform.enrolment.post(
            "/v1/enrolments", json=submission(consent=consent), headers=auth
        )
        assert single.status_code == 422, single.text
        assert single.headers["content-type"] == PROBLEM_JSON
        assert pointer in pointers(single)
        batch = await platform.enrolment.post(
            "/v1/enrolments/batch",
            json={"items": [submission(consent=consent), submission()]},
            headers=auth,
        )
        assert batch.status_code == 200, batch.text
        first, second = batch.json()["results"]
        assert first["http_status"] == 422 and second["http_status"] == 201, batch.text
    # Known keys still work, in full or in part.
    ok = await platform.enrolment.post(
        "/v1/enrolments", json=submission(consent={"research": True}), headers=auth
    )
    assert ok.status_code == 201, ok.text
    created = ok.json()["enrolment_id"]
    for body in ({"matching": True, "research": False, "$set": {}}, {"matching": True}):
        change = await platform.enrolment.post(
            f"/v1/enrolments/{created}/consent", json=body, headers=auth
        )
        assert change.status_code == 422, change.text


# ---------------------------------------------------- item 3: per-credential rate limit


async def test_one_provider_flooding_is_limited_while_another_is_served(
    platform: Platform,
) -> None:
    limiter: RateLimiter = platform.apps["enrolment"].state.rate_limiter
    saved = (limiter.rate_per_s, limiter.burst)
    limiter.rate_per_s, limiter.burst = 2.0, 30
    limiter._buckets.clear()
    a = platform.auth(platform.keys.provider_gm)
    b = platform.auth(platform.keys.provider_wm)
    missing = "/v1/enrolments/enr_" + "0" * 32
    try:
        flood = [platform.enrolment.get(missing, headers=a) for _ in range(80)]
        served = [platform.enrolment.get(missing, headers=b) for _ in range(20)]
        results = await asyncio.gather(*flood, *served)
        a_results, b_results = results[:80], results[80:]
        limited = [r for r in a_results if r.status_code == 429]
        assert len(limited) >= 40, [r.status_code for r in a_results]
        assert all(r.status_code == 404 for r in b_results), [r.status_code for r in b_results]
        sample = limited[0]
        assert sample.headers["content-type"] == PROBLEM_JSON
        assert int(sample.headers["retry-after"]) >= 1
        assert sample.json()["type"].endswith("/rate-limited")
        # A batch counts every item: with a full bucket (30) B may send 25 items, then
        # not 10 more at once.
        limiter._buckets.clear()
        ok = await platform.enrolment.post(
            "/v1/enrolments/batch",
            json={
                "items": [
                    submission(combined_authority="E47000007", local_authority="E08000025")
                    for _ in range(25)
                ]
            },
            headers=b,
        )
        assert ok.status_code == 200, ok.text
        over = await platform.enrolment.post(
            "/v1/enrolments/batch", json={"items": [submission() for _ in range(10)]}, headers=b
        )
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) >= 1
    finally:
        limiter.rate_per_s, limiter.burst = saved
        limiter._buckets.clear()


# ------------------------------------------- item 6: per-route limit on streamed bodies


async def test_single_submission_limit_holds_for_chunked_bodies(platform: Platform) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        chunk = b"{" + b" " * 8191
        while pulled < 1024 * 1024:
            pulled += len(chunk)
            yield chunk

    auth = platform.auth(platform.keys.provider_gm)
    for path in ("/v1/enrolments", "/v1/enrolments/enr_" + "0" * 32 + "/progress"):
        pulled = 0
        response = await platform.enrolment.post(
            path, content=body(), headers={**auth, "content-type": "application/json"}
        )
        assert response.status_code == 413, (path, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        assert pulled <= 64 * 1024 + 2 * 8192, (path, pulled)


# --------------------------------------------------- item 10: no control characters


async def test_control_characters_in_names_and_reasons_are_refused(platform: Platform) -> None:
    auth = platform.auth(platform.keys.provider_gm)
    for name in ("Ann\x00e", "An\x85ne", "Ann\x1be[31m", "Ann\x7fe"):
        response = await platform.enrolment.post(
            "/v1/enrolments", json=submission(given_names=name), headers=auth
        )
        assert response.status_code == 422, response.text
        assert "/given_names" in pointers(response)
        assert name not in response.text
    fine = await platform.enrolment.post(
        "/v1/enrolments", json=submission(family_name="Zoë O'Brien-Łukasz"), headers=auth
    )
    assert fine.status_code == 201, fine.text


# ----------------------------------------------- item 5: dates within programme years


async def test_dates_are_bounded_by_the_programme_years(platform: Platform) -> None:
    auth = platform.auth(platform.keys.provider_gm)
    for overrides, pointer in (
        ({"start_date": "2140-09-01", "planned_end_date": "2141-07-01"}, "/start_date"),
        ({"start_date": "1990-09-01", "planned_end_date": "1991-07-01"}, "/start_date"),
        ({"planned_end_date": "9999-12-31"}, "/planned_end_date"),
    ):
        response = await platform.enrolment.post(
            "/v1/enrolments", json=submission(**overrides), headers=auth
        )
        assert response.status_code == 422, (overrides, response.text)
        errors = response.json()["errors"]
        assert (pointer, "date_out_of_range") in {(e["pointer"], e["code"]) for e in errors}


# ------------------------------------------------------ item 11: OpenAPI says it all


async def test_openapi_documents_security_and_problem_responses(platform: Platform) -> None:
    for service, client in (
        ("enrolment", platform.enrolment),
        ("matching", platform.matching),
        ("reporting", platform.reporting),
    ):
        doc = (await client.get("/openapi.json")).json()
        schemes = doc["components"]["securitySchemes"]
        assert "Problem" in doc["components"]["schemas"], service
        checked = 0
        for path, operations in doc["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for method, op in operations.items():
                where = f"{service} {method.upper()} {path}"
                assert op.get("security"), where
                for requirement in op["security"]:
                    assert set(requirement) <= set(schemes), where
                responses = op["responses"]
                wanted = {"401", "403", "429"}
                params = op.get("parameters", [])
                if params or "requestBody" in op:
                    wanted.add("422")
                if any(p["in"] == "path" for p in params):
                    wanted.add("404")
                assert wanted <= set(responses), (where, sorted(responses))
                for status, response in responses.items():
                    if status[0] in "45":
                        assert "application/problem+json" in response.get("content", {}), (
                            where,
                            status,
                        )
                checked += 1
        assert checked, service


async def test_wrong_method_on_batch_is_405_not_422(platform: Platform) -> None:
    auth = platform.auth(platform.keys.provider_gm)
    response = await platform.enrolment.get("/v1/enrolments/batch", headers=auth)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == PROBLEM_JSON
