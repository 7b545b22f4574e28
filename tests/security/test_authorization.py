"""Authorization of every HTTP endpoint of every service, against the real apps.

The routes are enumerated from each app itself: a newly added endpoint that has no entry
in ``CHECKS`` fails :func:`test_every_route_has_an_authorization_check`. Each check
exercises the endpoint with no key, with a key of a role it does not serve, and with
keys of the right role inside and outside their scope: providers see and write only
their own enrolments in the combined authorities they are contracted for, a coordinator
sees only their combined authority, only analysts get unrounded numbers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from services.matching.domain import Match, MatchStatus
from services.matching.repository import match_doc
from tests.helpers import unique
from tests.security.conftest import GM, WM, Platform, submission

pytestmark = pytest.mark.integration

# Operational endpoints: no data, no key (checked in test_ops_endpoints_carry_no_data).
OPS_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/asyncapi.json", "/openapi.json", "/docs", "/redoc"}
)
OPS_PREFIXES = ("/docs/", "/static/", "/dashboard/static")

Check = Callable[[Platform], Awaitable[None]]


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, APIRoute):
            for method in (route.methods or set()) - {"HEAD", "OPTIONS"}:
                yield method, prefix + route.path
        included = getattr(route, "original_router", None)  # FastAPI's lazy include
        if included is not None:
            yield from _walk(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, except the operational endpoints."""
    return {
        (method, path)
        for method, path in _walk(app.routes)
        if path not in OPS_PATHS and not path.startswith(OPS_PREFIXES)
    }


def status(response: httpx.Response, expected: int) -> None:
    assert response.status_code == expected, (
        f"{response.request.method} {response.request.url.path}: "
        f"{response.status_code} {response.text[:300]}"
    )
    if expected >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


async def unauthenticated(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> None:
    status(await client.request(method, path, **kw), 401)
    bad = {"Authorization": "Bearer cg_not-a-real-key-" + "x" * 30}
    status(await client.request(method, path, headers=bad, **kw), 401)


async def enrolment_of(p: Platform, key: str, **overrides: Any) -> dict[str, Any]:
    response = await p.enrolment.post(
        "/v1/enrolments", json=submission(**overrides), headers=p.auth(key)
    )
    status(response, 201)
    body: dict[str, Any] = response.json()
    got = await p.enrolment.get(body["href"], headers=p.auth(key))
    return {**body, "learner": got.json()["learner"]}


# ---------------------------------------------------------------------------- enrolment

WM_SUBMISSION = {"combined_authority": WM.value, "local_authority": "E08000025"}


async def check_submit(p: Platform) -> None:
    await unauthenticated(p.enrolment, "POST", "/v1/enrolments", json=submission())
    status(
        await p.enrolment.post("/v1/enrolments", json=submission(), headers=p.auth(p.keys.dpo)),
        403,
    )
    # Not contracted for West Midlands.
    refused = await p.enrolment.post(
        "/v1/enrolments", json=submission(**WM_SUBMISSION), headers=p.auth(p.keys.provider_gm)
    )
    status(refused, 403)
    assert refused.json()["type"].endswith("not-contracted")
    ok = await p.enrolment.post(
        "/v1/enrolments", json=submission(), headers=p.auth(p.keys.provider_gm)
    )
    status(ok, 201)


async def check_batch(p: Platform) -> None:
    body = {"items": [submission(), submission(**WM_SUBMISSION)]}
    await unauthenticated(p.enrolment, "POST", "/v1/enrolments/batch", json=body)
    status(
        await p.enrolment.post("/v1/enrolments/batch", json=body, headers=p.auth(p.keys.dpo)),
        403,
    )
    response = await p.enrolment.post(
        "/v1/enrolments/batch", json=body, headers=p.auth(p.keys.provider_gm)
    )
    status(response, 200)
    assert [r["http_status"] for r in response.json()["results"]] == [201, 403]


async def check_get(p: Platform) -> None:
    mine = await enrolment_of(p, p.keys.provider_gm)
    await unauthenticated(p.enrolment, "GET", mine["href"])
    status(await p.enrolment.get(mine["href"], headers=p.auth(p.keys.dpo)), 403)
    # Another provider's enrolment does not exist for them.
    status(await p.enrolment.get(mine["href"], headers=p.auth(p.keys.provider_wm)), 404)
    status(await p.enrolment.get(mine["href"], headers=p.auth(p.keys.provider_gm)), 200)


async def check_progress(p: Platform) -> None:
    mine = await enrolment_of(p, p.keys.provider_gm)
    path = mine["href"] + "/progress"
    record = {
        "kind": "attendance",
        "period_start": "2025-09-08",
        "period_end": "2025-09-30",
        "sessions_planned": 8,
        "sessions_attended": 7,
    }
    await unauthenticated(p.enrolment, "POST", path, json=record)
    status(await p.enrolment.post(path, json=record, headers=p.auth(p.keys.dpo)), 403)
    status(await p.enrolment.post(path, json=record, headers=p.auth(p.keys.provider_wm)), 404)
    status(await p.enrolment.post(path, json=record, headers=p.auth(p.keys.provider_gm)), 202)


async def check_consent(p: Platform) -> None:
    mine = await enrolment_of(p, p.keys.provider_gm)
    path = mine["href"] + "/consent"
    body = {"matching": True, "research": False}
    await unauthenticated(p.enrolment, "POST", path, json=body)
    status(await p.enrolment.post(path, json=body, headers=p.auth(p.keys.dpo)), 403)
    status(await p.enrolment.post(path, json=body, headers=p.auth(p.keys.provider_wm)), 404)
    status(await p.enrolment.post(path, json=body, headers=p.auth(p.keys.provider_gm)), 202)
    status(await p.enrolment.post(path, json=body, headers=p.auth(p.keys.provider_gm)), 200)


async def check_erase(p: Platform) -> None:
    first = await enrolment_of(p, p.keys.provider_gm)
    second = await enrolment_of(p, p.keys.provider_gm)
    path = f"/v1/learners/{first['learner']}"
    await unauthenticated(p.enrolment, "DELETE", path)
    # Another provider's learner: not found (existence not revealed), nothing erased.
    status(await p.enrolment.delete(path, headers=p.auth(p.keys.provider_wm)), 404)
    status(await p.enrolment.get(first["href"], headers=p.auth(p.keys.provider_gm)), 200)
    status(await p.enrolment.delete(path, headers=p.auth(p.keys.provider_gm)), 202)
    status(await p.enrolment.delete(path, headers=p.auth(p.keys.provider_gm)), 200)
    status(await p.enrolment.get(first["href"], headers=p.auth(p.keys.provider_gm)), 404)
    # The data protection role may erase anyone's learner.
    other = f"/v1/learners/{second['learner']}"
    status(await p.enrolment.delete(other, headers=p.auth(p.keys.dpo)), 202)
    unknown = "/v1/learners/lp_" + "0" * 32
    status(await p.enrolment.delete(unknown, headers=p.auth(p.keys.dpo)), 404)


# ----------------------------------------------------------------------------- matching


async def seeded_match(p: Platform, ca: Any, la: str, status_: MatchStatus) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    match = Match(
        match_id=unique("match"),
        volunteer_id=unique("vol"),
        participant="lp_" + unique("x").replace("-", "")[:32].ljust(32, "0"),
        enrolment_id=None,
        combined_authority=ca,
        local_authority=la,
        status=status_,
        score=1.0,
        score_components={},
        bridging_dimensions=(),
        shared_slots=(),
        shared_interests=(),
        explanation="seeded for the authorization suite",
        waited_since=now - timedelta(days=3),
        proposed_at=now,
    )
    await p.matching_db["matches"].insert_one(match_doc(match))
    return match.match_id


def volunteer(la: str) -> dict[str, Any]:
    return {
        "local_authority": la,
        "capacity": 1,
        "dbs_expires_on": (date.today() + timedelta(days=365)).isoformat(),
        "availability": ["sun-eve"],
    }


async def check_volunteers(p: Platform) -> None:
    await unauthenticated(p.matching, "POST", "/v1/volunteers", json=volunteer("E08000004"))
    m = p.matching
    analyst = p.auth(p.keys.matching_analyst)
    status(await m.post("/v1/volunteers", json=volunteer("E08000004"), headers=analyst), 403)
    gm = p.auth(p.keys.coordinator_gm)
    status(await m.post("/v1/volunteers", json=volunteer("E08000025"), headers=gm), 403)
    created = await m.post("/v1/volunteers", json=volunteer("E08000004"), headers=gm)
    status(created, 201)
    # A coordinator of another authority cannot update it, nor learn that it exists.
    update = {**volunteer("E08000025"), "volunteer_id": created.json()["volunteer_id"]}
    wm = p.auth(p.keys.coordinator_wm)
    status(await m.post("/v1/volunteers", json=update, headers=wm), 404)


async def check_get_volunteer(p: Platform) -> None:
    gm = p.auth(p.keys.coordinator_gm)
    created = await p.matching.post("/v1/volunteers", json=volunteer("E08000004"), headers=gm)
    status(created, 201)
    path = created.headers["location"]
    assert path == f"/v1/volunteers/{created.json()['volunteer_id']}"
    await unauthenticated(p.matching, "GET", path)
    status(await p.matching.get(path, headers=p.auth(p.keys.matching_analyst)), 403)
    status(await p.matching.get(path, headers=p.auth(p.keys.coordinator_wm)), 404)
    got = await p.matching.get(path, headers=gm)
    status(got, 200)
    assert got.json() == created.json()


async def test_volunteer_ids_are_issued_and_reveal_nothing_across_authorities(
    platform: Platform,
) -> None:
    """Issue 17 item 9: the caller never chooses a volunteer id. An id taken in another
    combined authority and a free one answer the same 404 (it used to be 403 vs 201,
    and the free id was squatted); an external_ref is scoped to the combined authority."""
    m = platform.matching
    gm = platform.auth(platform.keys.coordinator_gm)
    wm = platform.auth(platform.keys.coordinator_wm)
    taken = await m.post("/v1/volunteers", json=volunteer("E08000004"), headers=gm)
    status(taken, 201)
    taken_id = taken.json()["volunteer_id"]
    answers = []
    for candidate in (taken_id, unique("vol-free")):
        r = await m.post(
            "/v1/volunteers", json={**volunteer("E08000025"), "volunteer_id": candidate}, headers=wm
        )
        status(r, 404)
        answers.append((r.status_code, r.json()["type"], r.json()["title"]))
    assert answers[0] == answers[1]
    for candidate in (taken_id, unique("vol-free")):
        status(await m.get(f"/v1/volunteers/{candidate}", headers=wm), 404)
    # The free id was not squatted, and a new volunteer's id is the service's own.
    fresh = await m.post("/v1/volunteers", json=volunteer("E08000025"), headers=wm)
    status(fresh, 201)
    assert fresh.json()["volunteer_id"].startswith("vol-")
    assert fresh.headers["location"] == f"/v1/volunteers/{fresh.json()['volunteer_id']}"
    # The owner updates with the issued id.
    moved = {**volunteer("E08000004"), "capacity": 2, "volunteer_id": taken_id}
    updated = await m.post("/v1/volunteers", json=moved, headers=gm)
    status(updated, 200)
    assert updated.json()["capacity"] == 2
    # external_ref: idempotent within an authority, independent across authorities.
    ref = unique("ref")
    first = await m.post(
        "/v1/volunteers", json={**volunteer("E08000004"), "external_ref": ref}, headers=gm
    )
    status(first, 201)
    again = await m.post(
        "/v1/volunteers", json={**volunteer("E08000004"), "external_ref": ref}, headers=gm
    )
    status(again, 200)
    assert again.json()["volunteer_id"] == first.json()["volunteer_id"]
    elsewhere = await m.post(
        "/v1/volunteers", json={**volunteer("E08000025"), "external_ref": ref}, headers=wm
    )
    status(elsewhere, 201)
    assert elsewhere.json()["volunteer_id"] != first.json()["volunteer_id"]
    both = {**volunteer("E08000004"), "external_ref": ref, "volunteer_id": taken_id}
    status(await m.post("/v1/volunteers", json=both, headers=gm), 422)


async def check_list_matches(p: Platform) -> None:
    gm_id = await seeded_match(p, GM, "E08000004", MatchStatus.PROPOSED)
    wm_id = await seeded_match(p, WM, "E08000025", MatchStatus.PROPOSED)
    await unauthenticated(p.matching, "GET", "/v1/matches")
    analyst = p.auth(p.keys.matching_analyst)
    status(await p.matching.get("/v1/matches", headers=analyst), 403)
    gm = p.auth(p.keys.coordinator_gm)
    listed = await p.matching.get("/v1/matches", params={"limit": 500}, headers=gm)
    status(listed, 200)
    ids = {m["match_id"] for m in listed.json()["items"]}
    authorities = {m["combined_authority"] for m in listed.json()["items"]}
    assert gm_id in ids and wm_id not in ids and authorities == {GM.value}
    other = await p.matching.get("/v1/matches", params={"local_authority": "E08000025"}, headers=gm)
    status(other, 403)


async def check_get_match(p: Platform) -> None:
    gm_id = await seeded_match(p, GM, "E08000004", MatchStatus.PROPOSED)
    wm_id = await seeded_match(p, WM, "E08000025", MatchStatus.PROPOSED)
    await unauthenticated(p.matching, "GET", f"/v1/matches/{gm_id}")
    gm = p.auth(p.keys.coordinator_gm)
    analyst = p.auth(p.keys.matching_analyst)
    status(await p.matching.get(f"/v1/matches/{gm_id}", headers=analyst), 403)
    status(await p.matching.get(f"/v1/matches/{wm_id}", headers=gm), 404)
    status(await p.matching.get(f"/v1/matches/{gm_id}", headers=gm), 200)


async def check_decision(p: Platform) -> None:
    gm_id = await seeded_match(p, GM, "E08000004", MatchStatus.DECLINED)
    wm_id = await seeded_match(p, WM, "E08000025", MatchStatus.PROPOSED)
    body = {"decision": "decline", "reason": "test"}
    await unauthenticated(p.matching, "POST", f"/v1/matches/{gm_id}/decision", json=body)
    gm = p.auth(p.keys.coordinator_gm)
    analyst = p.auth(p.keys.matching_analyst)
    m = p.matching
    status(await m.post(f"/v1/matches/{gm_id}/decision", json=body, headers=analyst), 403)
    status(await m.post(f"/v1/matches/{wm_id}/decision", json=body, headers=gm), 404)
    # In scope, the request reaches the lifecycle rules (already declined: 409).
    status(await m.post(f"/v1/matches/{gm_id}/decision", json=body, headers=gm), 409)


async def check_end(p: Platform) -> None:
    gm_id = await seeded_match(p, GM, "E08000004", MatchStatus.PROPOSED)
    wm_id = await seeded_match(p, WM, "E08000025", MatchStatus.CONFIRMED)
    body = {"reason": "moved away", "meetings_count": 2}
    await unauthenticated(p.matching, "POST", f"/v1/matches/{gm_id}/end", json=body)
    gm = p.auth(p.keys.coordinator_gm)
    analyst = p.auth(p.keys.matching_analyst)
    m = p.matching
    status(await m.post(f"/v1/matches/{gm_id}/end", json=body, headers=analyst), 403)
    status(await m.post(f"/v1/matches/{wm_id}/end", json=body, headers=gm), 404)
    status(await m.post(f"/v1/matches/{gm_id}/end", json=body, headers=gm), 409)


async def check_pool(p: Platform) -> None:
    await unauthenticated(p.matching, "GET", "/v1/pool")
    gm = p.auth(p.keys.coordinator_gm)
    analyst = p.auth(p.keys.matching_analyst)
    status(await p.matching.get("/v1/pool", headers=analyst), 403)
    params = {"combined_authority": WM.value}
    status(await p.matching.get("/v1/pool", params=params, headers=gm), 403)
    mine = await p.matching.get("/v1/pool", headers=gm)
    status(mine, 200)
    assert [v["combined_authority"] for v in mine.json()] == [GM.value]


async def volunteer_key_for(p: Platform, la: str) -> tuple[str, str]:
    """A volunteer registered by the GM coordinator, and a key of theirs."""
    gm = p.auth(p.keys.coordinator_gm)
    created = await p.matching.post("/v1/volunteers", json=volunteer(la), headers=gm)
    status(created, 201)
    volunteer_id = created.json()["volunteer_id"]
    issued = await p.matching.post(f"/v1/volunteers/{volunteer_id}/key", headers=gm)
    status(issued, 201)
    return volunteer_id, issued.json()["api_key"]


async def check_record_check_in(p: Platform) -> None:
    gm_id = await seeded_match(p, GM, "E08000004", MatchStatus.PROPOSED)
    wm_id = await seeded_match(p, WM, "E08000025", MatchStatus.CONFIRMED)
    body = {"met_on": date.today().isoformat()}
    await unauthenticated(p.matching, "POST", f"/v1/matches/{gm_id}/check-ins", json=body)
    m = p.matching
    analyst = p.auth(p.keys.matching_analyst)
    gm = p.auth(p.keys.coordinator_gm)
    status(await m.post(f"/v1/matches/{gm_id}/check-ins", json=body, headers=analyst), 403)
    status(await m.post(f"/v1/matches/{wm_id}/check-ins", json=body, headers=gm), 404)
    # In scope, the request reaches the rules (a proposal has no meetings: 409).
    status(await m.post(f"/v1/matches/{gm_id}/check-ins", json=body, headers=gm), 409)
    # A volunteer key works only on the volunteer's own matches.
    _, key = await volunteer_key_for(p, "E08000004")
    refused = await m.post(f"/v1/matches/{gm_id}/check-ins", json=body, headers=p.auth(key))
    status(refused, 403)
    assert refused.json()["type"].endswith("not-your-match")


async def check_list_check_ins(p: Platform) -> None:
    gm_id = await seeded_match(p, GM, "E08000004", MatchStatus.CONFIRMED)
    wm_id = await seeded_match(p, WM, "E08000025", MatchStatus.CONFIRMED)
    await unauthenticated(p.matching, "GET", f"/v1/matches/{gm_id}/check-ins")
    gm = p.auth(p.keys.coordinator_gm)
    analyst = p.auth(p.keys.matching_analyst)
    status(await p.matching.get(f"/v1/matches/{gm_id}/check-ins", headers=analyst), 403)
    status(await p.matching.get(f"/v1/matches/{wm_id}/check-ins", headers=gm), 404)
    status(await p.matching.get(f"/v1/matches/{gm_id}/check-ins", headers=gm), 200)
    _, key = await volunteer_key_for(p, "E08000004")
    status(await p.matching.get(f"/v1/matches/{gm_id}/check-ins", headers=p.auth(key)), 403)


async def check_volunteer_key(p: Platform) -> None:
    gm = p.auth(p.keys.coordinator_gm)
    created = await p.matching.post("/v1/volunteers", json=volunteer("E08000004"), headers=gm)
    volunteer_id = created.json()["volunteer_id"]
    path = f"/v1/volunteers/{volunteer_id}/key"
    await unauthenticated(p.matching, "POST", path)
    status(await p.matching.post(path, headers=p.auth(p.keys.matching_analyst)), 403)
    status(await p.matching.post(path, headers=p.auth(p.keys.coordinator_wm)), 404)
    issued = await p.matching.post(path, headers=gm)
    status(issued, 201)
    # A volunteer key is not a coordinator key.
    own = p.auth(issued.json()["api_key"])
    status(await p.matching.post(path, headers=own), 403)
    status(await p.matching.get("/v1/pool", headers=own), 403)


def waiting_check(path: str) -> Check:
    async def check(p: Platform) -> None:
        await unauthenticated(p.matching, "GET", path)
        gm = p.auth(p.keys.coordinator_gm)
        analyst = p.auth(p.keys.matching_analyst)
        status(await p.matching.get(path, headers=analyst), 403)
        outside = {"combined_authority": WM.value}
        status(await p.matching.get(path, params=outside, headers=gm), 403)
        status(await p.matching.get(path, params={"local_authority": "E08000025"}, headers=gm), 403)
        status(await p.matching.get(path, headers=gm), 200)

    return check


# ---------------------------------------------------------------------------- reporting


def report_check(path: str, extra: dict[str, str]) -> Check:
    async def check(p: Platform) -> None:
        r = p.reporting
        await unauthenticated(r, "GET", path, params=extra)
        provider = p.auth(p.keys.reporting_provider)
        status(await r.get(path, params=extra, headers=provider), 403)
        gm = p.auth(p.keys.coordinator_gm)
        outside = {**extra, "combined_authority": WM.value}
        status(await r.get(path, params=outside, headers=gm), 403)
        status(await r.get(path, params={**extra, "local_authority": "E08000025"}, headers=gm), 403)
        status(await r.get(path, params={**extra, "unrounded": "true"}, headers=gm), 403)
        status(await r.get(path, params=extra, headers=gm), 200)
        analyst = p.auth(p.keys.analyst)
        status(await r.get(path, params={**extra, "unrounded": "true"}, headers=analyst), 200)

    return check


async def check_meta(p: Platform) -> None:
    await unauthenticated(p.reporting, "GET", "/v1/reports/meta")
    status(
        await p.reporting.get("/v1/reports/meta", headers=p.auth(p.keys.reporting_provider)), 403
    )
    gm = await p.reporting.get("/v1/reports/meta", headers=p.auth(p.keys.coordinator_gm))
    status(gm, 200)
    assert [ca["code"] for ca in gm.json()["combined_authorities"]] == [GM.value]
    assert gm.json()["can_unround"] is False
    analyst = await p.reporting.get("/v1/reports/meta", headers=p.auth(p.keys.analyst))
    assert analyst.json()["can_unround"] is True


async def check_dashboard(p: Platform) -> None:
    """A public static shell: no numbers in it; every number comes from the
    authenticated report endpoints."""
    shell = await p.reporting.get("/dashboard")
    status(shell, 200)
    assert shell.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in shell.headers
    assert p.keys.analyst not in shell.text


async def check_batch_wrong_method(p: Platform) -> None:
    """Only answers 405 (Allow: POST), to anyone: no data, no work."""
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        for headers in ({}, p.auth(p.keys.provider_gm), p.auth(p.keys.dpo)):
            response = await p.enrolment.request(method, "/v1/enrolments/batch", headers=headers)
            assert response.status_code == 405, (method, response.text)
            assert response.headers["allow"] == "POST"


# ------------------------------------------------------------------- ILR files (#15)


def ilr_file(ukprn: str) -> bytes:
    from simulator.ilr import IlrFileSpec, collection_days, ilr_bytes

    _, _, as_of = collection_days(date.today())
    data, _ = ilr_bytes(IlrFileSpec(ukprn, 3, as_of, seed=15))
    return data


XML = {"Content-Type": "application/xml"}


async def check_ilr_upload(p: Platform) -> None:
    body = ilr_file(p.ukprn_gm)
    status(await p.enrolment.post("/v1/ilr/submissions", content=body, headers=XML), 401)
    bad = {**XML, "Authorization": "Bearer cg_not-a-real-key-" + "x" * 30}
    status(await p.enrolment.post("/v1/ilr/submissions", content=body, headers=bad), 401)
    dpo = {**XML, **p.auth(p.keys.dpo)}
    status(await p.enrolment.post("/v1/ilr/submissions", content=body, headers=dpo), 403)
    # Another provider's file (its UKPRN is not the caller's): refused, nothing stored.
    wm = {**XML, **p.auth(p.keys.provider_wm)}
    refused = await p.enrolment.post("/v1/ilr/submissions", content=body, headers=wm)
    status(refused, 403)
    assert refused.json()["type"].endswith("ilr-ukprn-mismatch")
    gm = {**XML, **p.auth(p.keys.provider_gm)}
    ok = await p.enrolment.post(
        "/v1/ilr/submissions", content=body, headers=gm, params={"wait": 30}
    )
    status(ok, 200)


async def check_ilr_status(p: Platform) -> None:
    gm = {**XML, **p.auth(p.keys.provider_gm)}
    created = await p.enrolment.post(
        "/v1/ilr/submissions", content=ilr_file(p.ukprn_gm), headers=gm, params={"wait": 30}
    )
    status(created, 200)
    href = created.json()["href"]
    await unauthenticated(p.enrolment, "GET", href)
    status(await p.enrolment.get(href, headers=p.auth(p.keys.dpo)), 403)
    status(await p.enrolment.get(href, headers=p.auth(p.keys.provider_wm)), 404)
    status(await p.enrolment.get(href, headers=p.auth(p.keys.provider_gm)), 200)


CHECKS: dict[tuple[str, str, str], Check] = {
    ("enrolment", "POST", "/v1/enrolments"): check_submit,
    ("enrolment", "POST", "/v1/enrolments/batch"): check_batch,
    ("enrolment", "GET", "/v1/enrolments/batch"): check_batch_wrong_method,
    ("enrolment", "PUT", "/v1/enrolments/batch"): check_batch_wrong_method,
    ("enrolment", "PATCH", "/v1/enrolments/batch"): check_batch_wrong_method,
    ("enrolment", "DELETE", "/v1/enrolments/batch"): check_batch_wrong_method,
    ("enrolment", "GET", "/v1/enrolments/{enrolment_id}"): check_get,
    ("enrolment", "POST", "/v1/enrolments/{enrolment_id}/progress"): check_progress,
    ("enrolment", "POST", "/v1/enrolments/{enrolment_id}/consent"): check_consent,
    ("enrolment", "DELETE", "/v1/learners/{learner}"): check_erase,
    ("matching", "POST", "/v1/volunteers"): check_volunteers,
    ("matching", "GET", "/v1/volunteers/{volunteer_id}"): check_get_volunteer,
    ("matching", "GET", "/v1/matches"): check_list_matches,
    ("matching", "GET", "/v1/matches/{match_id}"): check_get_match,
    ("matching", "POST", "/v1/matches/{match_id}/decision"): check_decision,
    ("matching", "POST", "/v1/matches/{match_id}/end"): check_end,
    ("matching", "GET", "/v1/pool"): check_pool,
    ("matching", "POST", "/v1/matches/{match_id}/check-ins"): check_record_check_in,
    ("matching", "GET", "/v1/matches/{match_id}/check-ins"): check_list_check_ins,
    ("matching", "POST", "/v1/volunteers/{volunteer_id}/key"): check_volunteer_key,
    ("matching", "GET", "/v1/pool/waiting"): waiting_check("/v1/pool/waiting"),
    ("matching", "GET", "/v1/pool/waiting.csv"): waiting_check("/v1/pool/waiting.csv"),
    ("reporting", "GET", "/v1/reports/summary"): report_check("/v1/reports/summary", {}),
    ("reporting", "GET", "/v1/reports/breakdown"): report_check(
        "/v1/reports/breakdown", {"by": "ethnicity"}
    ),
    ("reporting", "GET", "/v1/reports/export.csv"): report_check(
        "/v1/reports/export.csv", {"by": "local_authority"}
    ),
    ("reporting", "GET", "/v1/reports/meta"): check_meta,
    ("reporting", "GET", "/v1/reports/bridges"): report_check("/v1/reports/bridges", {}),
    ("reporting", "GET", "/v1/reports/waiting"): report_check("/v1/reports/waiting", {"by": "sex"}),
    ("reporting", "GET", "/v1/reports/indicators"): report_check("/v1/reports/indicators", {}),
    ("reporting", "GET", "/v1/reports/indicators.csv"): report_check(
        "/v1/reports/indicators.csv", {}
    ),
    ("reporting", "GET", "/v1/reports/esol-comparison"): report_check(
        "/v1/reports/esol-comparison", {}
    ),
    ("enrolment", "POST", "/v1/ilr/submissions"): check_ilr_upload,
    ("enrolment", "GET", "/v1/ilr/submissions/{upload_id}"): check_ilr_status,
    ("reporting", "GET", "/v1/reports/qar"): report_check("/v1/reports/qar", {}),
    ("reporting", "GET", "/dashboard"): check_dashboard,
    ("reporting", "GET", "/dashboard/app.js"): check_dashboard,
    ("reporting", "GET", "/dashboard/app.css"): check_dashboard,
}


def test_every_route_has_an_authorization_check(platform: Platform) -> None:
    routes = {
        (service, method, path)
        for service, app in platform.apps.items()
        for method, path in api_routes(app)
    }
    missing = routes - set(CHECKS)
    assert not missing, f"endpoints without an authorization check: {sorted(missing)}"
    stale = set(CHECKS) - routes
    assert not stale, f"checks for endpoints that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("route", sorted(CHECKS), ids=lambda r: f"{r[0]} {r[1]} {r[2]}")
async def test_authorization(platform: Platform, route: tuple[str, str, str]) -> None:
    await CHECKS[route](platform)


async def test_ops_endpoints_carry_no_data(platform: Platform) -> None:
    """Health, readiness and metrics answer without a key and hold no personal data,
    pseudonyms or keys (just component names, booleans and bounded-label metrics)."""
    learner = (await enrolment_of(platform, platform.keys.provider_gm))["learner"]
    for client in (platform.enrolment, platform.matching, platform.reporting):
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert set(ready.json()) <= {"status", "checks"}
        metrics = (await client.get("/metrics")).text
        for secret in (learner, platform.ukprn_gm, *vars(platform.keys).values()):
            assert secret not in metrics
        for personal in ("asian_pakistani", "muslim", "OL9 7ZZ", "Test "):
            assert personal not in metrics
