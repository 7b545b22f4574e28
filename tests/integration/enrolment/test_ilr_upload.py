"""ILR file intake through the real stack: the enrolment service (real broker and
database) publishes what a provider's ILR file says, and the reporting service's
figures move by exactly what the file states (unrounded mode compared), QAR included.

* hostile or wrong files (malformed, wrong namespace or year, another provider's UKPRN,
  entity expansion, external entities) get a clear problem+json and store nothing;
* a 2,000-learner file lands in the reports exactly;
* the next month's file emits only the differences; the same file again changes nothing.

Reports are compared as *differences* from a baseline taken before the first upload,
because the topics are shared with the rest of the suite.
"""

from __future__ import annotations

import json
import random
import string
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app as create_enrolment
from services.enrolment.settings import EnrolmentSettings
from services.reporting.app import create_app as create_reporting
from services.reporting.domain.qar import QarAim, qar_contribution
from services.reporting.settings import ReportingSettings
from shared.auth import ApiKeyStore, Principal, Role
from shared.contracts.reference import LOCAL_AUTHORITIES, CombinedAuthority
from simulator.ilr import ExpectedEnrolment, FileTruth, IlrFileSpec, collection_days, ilr_bytes
from tests.helpers import poll_until, running_app, unique
from tests.infra import Infra

pytestmark = pytest.mark.slow

GM = CombinedAuthority.GREATER_MANCHESTER
LEARNERS = 2000
ANALYST_KEY = "cg_it_ilr_analyst_" + unique("k")
YEAR, MONTH_1, MONTH_2 = collection_days(date.today())
MEASURES = ("started", "withdrawn", "completed", "on_break", "achieved")
QAR_MEASURES = ("leavers", "completers", "achievers", "excluded_qualifying")
Doc = dict[str, Any]


@dataclass
class Stack:
    enrolment: httpx.AsyncClient
    reporting: httpx.AsyncClient
    db: AsyncDatabase[Doc]
    ukprn: str
    key: str
    other_ukprn: str

    def auth(self, xml: bool = True) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        if xml:
            headers["Content-Type"] = "application/xml"
        return headers


@pytest.fixture(scope="module")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap_servers,
        "mongodb_url": infra.mongodb_url,
        "log_json": False,
    }
    enrolment_settings = EnrolmentSettings(
        **common,
        mongodb_database=unique("cg_enrolment_ilr"),
        consumer_group=unique("enrolment-ilr"),
        outbox_poll_interval_s=0.1,
        ilr_chunk_learners=500,
        rate_limit_burst=100_000,
    )
    reporting_settings = ReportingSettings(
        **common,
        mongodb_database=unique("cg_reporting_ilr"),
        consumer_group=unique("reporting-ilr"),
        projection_batch_timeout_ms=100,
        projection_max_records=1000,
    )
    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    keys = ApiKeyStore(mongo[reporting_settings.database_name]["api_keys"])
    await keys.add_key(
        Principal(principal_id="ilr-analyst", name="Analyst", role=Role.ANALYST), ANALYST_KEY
    )
    try:
        async with (
            running_app(create_enrolment(enrolment_settings)) as enrolment,
            running_app(create_reporting(reporting_settings)) as reporting,
        ):
            db = mongo[enrolment_settings.database_name]
            admin = ProviderAdmin(db)
            ukprn = "1" + "".join(random.choices(string.digits, k=7))
            other = "10999999"
            key = await admin.register_provider("Oldham College", ukprn, [GM.value])
            yield Stack(enrolment, reporting, db, ukprn, key, other)
    finally:
        await mongo.close()


# ------------------------------------------------------------------------------ helpers


async def breakdown(stack: Stack) -> dict[str, dict[str, int]]:
    response = await stack.reporting.get(
        "/v1/reports/breakdown",
        params={"by": "local_authority", "combined_authority": GM.value, "unrounded": "true"},
        headers={"Authorization": f"Bearer {ANALYST_KEY}"},
    )
    assert response.status_code == 200, response.text
    return {row["code"]: {m: row["values"][m] for m in MEASURES} for row in response.json()["rows"]}


async def qar(stack: Stack) -> dict[str, dict[str, int]]:
    response = await stack.reporting.get(
        "/v1/reports/qar",
        params={"combined_authority": GM.value, "unrounded": "true"},
        headers={"Authorization": f"Bearer {ANALYST_KEY}"},
    )
    assert response.status_code == 200, response.text
    return {
        row["code"]: {m: row["values"][m] for m in QAR_MEASURES} for row in response.json()["rows"]
    }


def expected_breakdown(enrolments: list[ExpectedEnrolment]) -> dict[str, dict[str, int]]:
    out = {la: dict.fromkeys(MEASURES, 0) for la in LOCAL_AUTHORITIES[GM]}
    for e in enrolments:
        row = out[e.local_authority]
        row["started"] += 1
        key = {"withdrawn": "withdrawn", "completed": "completed", "break": "on_break"}
        if e.status in key:
            row[key[e.status]] += 1
        if e.status == "completed" and e.outcome == 1:
            row["achieved"] += 1
    return out


def expected_qar(enrolments: list[ExpectedEnrolment]) -> dict[str, dict[str, int]]:
    status = {"continuing": 1, "completed": 2, "withdrawn": 3, "break": 6}
    out: dict[str, Counter[str]] = {}
    for e in enrolments:
        found = qar_contribution(
            QarAim(
                status=status[e.status],
                start=e.start,
                planned_end=e.planned_end,
                ended_on=e.ended_on if e.status != "break" else None,
                break_on=e.ended_on if e.status == "break" else None,
                outcome=e.outcome,
            )
        )
        if found:
            out.setdefault(found[0], Counter()).update(found[1])
    return {y: {m: c[f"qar_{m}"] for m in QAR_MEASURES} for y, c in out.items()}


def plus(base: dict[str, dict[str, int]], delta: dict[str, dict[str, int]]) -> dict[str, Any]:
    keys = set(base) | set(delta)
    zero = dict.fromkeys(next(iter(delta.values()), {}), 0) if delta else {}
    return {
        k: {m: base.get(k, zero).get(m, 0) + delta.get(k, zero).get(m, 0) for m in zero}
        for k in keys
    }


def nonzero(table: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {k: v for k, v in table.items() if any(v.values())}


async def upload(stack: Stack, data: bytes) -> dict[str, Any]:
    response = await stack.enrolment.post(
        "/v1/ilr/submissions", content=data, headers=stack.auth(), params={"wait": 60}
    )
    assert response.status_code in (200, 202), response.text
    href = response.json()["href"]

    async def done() -> dict[str, Any] | None:
        got = await stack.enrolment.get(href, headers=stack.auth(False), params={"wait": 5})
        body: dict[str, Any] = got.json()
        return body if body["status"] != "processing" else None

    report = await poll_until(done, timeout_s=120, what="the ILR upload to be processed")
    assert report["status"] == "completed", report
    return report


async def settled(stack: Stack, probe: Any, expected: Any, what: str) -> None:
    async def matches() -> bool:
        return bool(nonzero(await probe(stack)) == nonzero(expected))

    try:
        await poll_until(matches, timeout_s=90, interval_s=0.5, what=what)
    except AssertionError:
        assert nonzero(await probe(stack)) == nonzero(expected)  # shows the difference
        raise


async def stored_counts(stack: Stack) -> tuple[int, int, int]:
    return (
        await stack.db["enrolments"].count_documents({}),
        await stack.db["ilr_uploads"].count_documents({}),
        await stack.db["outbox"].count_documents({}),
    )


# -------------------------------------------------------------------------------- tests

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<Message xmlns="ESFA/ILR/2026-27"><Header>&lol3;</Header></Message>'
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE Message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<Message xmlns="ESFA/ILR/2026-27"><Header>&xxe;</Header></Message>'
)


async def test_hostile_and_wrong_files_get_a_problem_and_store_nothing(stack: Stack) -> None:
    good, _ = ilr_bytes(IlrFileSpec(stack.ukprn, 20, MONTH_1, seed=99))
    year = YEAR.code
    wrong_year = "2526" if year != "2526" else "2627"
    cases = [
        ("malformed", good[: len(good) // 2], 422, "ilr-malformed"),
        (
            "namespace",
            good.replace(YEAR.namespace.encode(), b"ESFA/ILR/2024-25"),
            422,
            "ilr-wrong-namespace",
        ),
        (
            "year",
            good.replace(f"<Year>{year}</Year>".encode(), f"<Year>{wrong_year}</Year>".encode()),
            422,
            "ilr-wrong-year",
        ),
        ("ukprn", ilr_bytes(IlrFileSpec(stack.other_ukprn, 20, MONTH_1))[0], 403, "ukprn"),
        ("billion laughs", BILLION_LAUGHS, 422, "ilr-forbidden-xml"),
        ("xxe", XXE, 422, "ilr-forbidden-xml"),
    ]
    before = await stored_counts(stack)
    for name, body, code, slug in cases:
        response = await stack.enrolment.post(
            "/v1/ilr/submissions", content=body, headers=stack.auth()
        )
        assert response.status_code == code, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), name
        problem = response.json()
        assert slug in problem["type"], (name, problem)
        assert "Nothing of this file was stored" in problem["detail"], name
        assert "root:" not in response.text  # nothing of /etc/passwd comes back
    wrong_type = await stack.enrolment.post(
        "/v1/ilr/submissions", content=good, headers=stack.auth(False)
    )
    assert wrong_type.status_code == 415
    assert await stored_counts(stack) == before


async def test_a_2000_learner_file_lands_in_the_reports_exactly(stack: Stack) -> None:
    base_la, base_qar = await breakdown(stack), await qar(stack)
    faults = {7: "Ethnicity_01", 8: "DateOfBirth_01", 9: "WithdrawReason_04"}
    data, truth = ilr_bytes(IlrFileSpec(stack.ukprn, LEARNERS, MONTH_1, faults=faults))
    report = await upload(stack, data)
    summary = report["summary"]
    assert summary["learners"]["total"] == truth.learners_written
    assert summary["aims"]["created"] == len(truth.enrolments)
    assert summary["learners"]["with_errors"] == len(truth.faulty)
    assert summary["aims"]["out_of_scope"] == truth.out_of_scope_aims
    await settled(
        stack, breakdown, plus(base_la, expected_breakdown(truth.enrolments)), "month 1 figures"
    )
    await settled(stack, qar, plus(base_qar, expected_qar(truth.enrolments)), "month 1 QAR")
    # Personal fields leave sealed, exactly as for JSON intake (crypto-shredding).
    accepted = [
        json.loads(m["body"])
        async for row in stack.db["outbox"].find({})
        for m in row["messages"]
        if m["headers"]["ce_type"].endswith(".EnrolmentAccepted.v1")
    ]
    assert len(accepted) == len(truth.enrolments)
    assert all(a["sealed"] and a["background"].get("ethnicity") is None for a in accepted)
    learner_refs = {e.learn_ref for e in truth.enrolments}
    assert not any(ref in json.dumps(a) for a in accepted[:200] for ref in learner_refs)
    stack_state["month_1"] = truth
    stack_state["base"] = (base_la, base_qar)


stack_state: dict[str, Any] = {}


async def test_the_next_month_emits_only_the_differences_and_a_repeat_nothing(
    stack: Stack,
) -> None:
    truth_1: FileTruth = stack_state["month_1"]
    base_la, base_qar = stack_state["base"]
    dropped = frozenset({11, 12})
    data, truth_2 = ilr_bytes(IlrFileSpec(stack.ukprn, LEARNERS, MONTH_2, drop=dropped))
    report = await upload(stack, data)

    def key(e: ExpectedEnrolment) -> tuple[str, str, date]:
        return (e.learn_ref, e.aim_ref, e.start)

    before = {key(e): e for e in truth_1.enrolments}
    after = {key(e): e for e in truth_2.enrolments}
    changed = [
        k
        for k, e in after.items()
        if k not in before or (before[k].status, before[k].outcome) != (e.status, e.outcome)
    ]
    summary = report["summary"]
    assert summary["aims"]["created"] + summary["aims"]["updated"] == len(changed)
    assert summary["aims"]["created"] == len([k for k in after if k not in before])
    assert report["missing_learners"]["count"] == len(
        {e.learn_ref for e in truth_1.enrolments if e.learn_ref not in {a[0] for a in after}}
    )
    # Learners missing from the file keep their month-1 state (never withdrawn).
    dropped_refs = {a.learn_ref for a in truth_1.enrolments} - {a[0] for a in after}
    final = [*after.values(), *(e for e in truth_1.enrolments if e.learn_ref in dropped_refs)]
    await settled(stack, breakdown, plus(base_la, expected_breakdown(final)), "month 2 figures")
    await settled(stack, qar, plus(base_qar, expected_qar(final)), "month 2 QAR")

    outbox_before = await stack.db["outbox"].count_documents({})
    again = await upload(stack, data)
    assert again["summary"]["events"] == {}
    assert again["summary"]["aims"]["created"] == again["summary"]["aims"]["updated"] == 0
    assert await stack.db["outbox"].count_documents({}) == outbox_before
