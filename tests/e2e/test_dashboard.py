"""The dashboard in headless Chromium, fed by real events.

The reporting service runs as its own process (``python -m services.reporting``) on a
free port against the session's embedded broker and database. Events are published by an
independent producer, consumed by the service, and must show up on the page, already
disclosure-controlled. A screenshot is saved to artifacts/dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import MongoClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from devstack.processes import free_port
from shared.auth import Principal, Role, hash_key
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
from tests.conftest import require_tool
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
from tests.helpers import unique
from tests.infra import Infra

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
YEAR = random.Random().randint(1901, 1999)
KEY = "cg_e2e_coordinator_" + unique("k")
GM_LAS = list(LOCAL_AUTHORITIES[CombinedAuthority.GREATER_MANCHESTER])
QUIET_BOROUGHS = {"E08000010"}  # Wigan: listed with zeros, not left out


def scenario(rng: random.Random) -> tuple[list[CloudEvent[Event]], dict[str, int]]:
    """A few months of Greater Manchester activity, and the true totals to check against."""
    events: list[Event] = []
    truth = {"started": 0, "completed": 0, "achieved": 0, "confirmed": 0, "waiting": 0}
    boroughs = [la for la in GM_LAS if la not in QUIET_BOROUGHS]
    weights = [9, 4, 14, 8, 6, 7, 3, 4, 2][: len(boroughs)]
    for _ in range(160):
        la = rng.choices(boroughs, weights)[0]
        programme = rng.choices(
            [Programme.ESOL, Programme.DIGITAL, Programme.EMPLOYABILITY], [6, 2, 2]
        )[0]
        level = rng.choice(
            [Level.PRE_ENTRY, Level.ENTRY_1, Level.ENTRY_2, Level.ENTRY_3]
            if programme == Programme.ESOL
            else [Level.LEVEL_1]
        )
        e = accepted(
            la=la,
            programme=programme,
            level=level,
            start=date(YEAR, rng.randint(1, 6), rng.randint(1, 28)),
            ethnicity=rng.choice(list(Ethnicity)),
        )
        truth["started"] += 1
        events += [e, attendance(e, 10, rng.randint(4, 10))]
        if programme == Programme.ESOL and rng.random() < 0.6:
            idx = [Level.PRE_ENTRY, Level.ENTRY_1, Level.ENTRY_2, Level.ENTRY_3, Level.LEVEL_1]
            up = idx[min(idx.index(level) + rng.choice([0, 1, 1, 2]), len(idx) - 1)]
            events.append(assessed(e, up))
        fate = rng.random()
        if fate < 0.55:
            outcome = Outcome.ACHIEVED if rng.random() < 0.75 else Outcome.NOT_ACHIEVED
            events.append(completed(e, outcome))
            truth["completed"] += 1
            truth["achieved"] += outcome == Outcome.ACHIEVED
        elif fate < 0.75:
            events.append(withdrawn(e, rng.choice(list(WithdrawalReason)[:6])))
        if programme == Programme.ESOL and rng.random() < 0.55:
            events.append(opted_in(e))
            if rng.random() < 0.6:
                pair = Pair(e)
                after = rng.uniform(2, 45)
                events += [
                    pair.proposed(),
                    pair.confirmed(after, cross_background=rng.random() < 0.7),
                ]
                # Meetings (issue 16): some pairs keep meeting past 6 weeks.
                events += [
                    pair.checked_in(after, day) for day in (20, 40, 170)[: rng.randint(0, 3)]
                ]
                truth["confirmed"] += 1
            else:
                truth["waiting"] += 1
    return [cloud(ev) for ev in events], truth


def published_summary(base: str, **params: str) -> dict[str, Any]:
    """The summary as the API publishes it to this key (perturbed: the dashboard must
    show exactly these figures)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    body: dict[str, Any] = httpx.get(
        f"{base}/v1/reports/summary", params=params, headers=headers
    ).json()
    return body


@pytest.fixture(scope="module")
def service(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = unique("cg_reporting_e2e")
    mongo: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_url)
    principal = Principal(
        principal_id="e2e-coordinator",
        name="Greater Manchester coordinator",
        role=Role.COORDINATOR,
        combined_authorities=(CombinedAuthority.GREATER_MANCHESTER,),
    )
    mongo[database]["api_keys"].insert_one(
        {**principal.model_dump(mode="json"), "key_hash": hash_key(KEY), "revoked_at": None}
    )
    mongo.close()
    port = free_port()
    log = (tmp_path_factory.mktemp("reporting") / "reporting.log").open("w")
    env = {
        **os.environ,
        "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "COMMONGROUND_MONGODB_URL": infra.mongodb_url,
        "REPORTING_HTTP_PORT": str(port),
        "REPORTING_MONGODB_DATABASE": database,
        "REPORTING_CONSUMER_GROUP": unique("reporting-e2e"),
        "REPORTING_PROJECTION_BATCH_TIMEOUT_MS": "100",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.reporting"], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the reporting service exited"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the reporting service did not become ready"
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def publish(bootstrap: str, events: list[CloudEvent[Event]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for ce in events:
            match = ce.type.split(".")[2].startswith("Match")
            key = getattr(ce.data, "local_authority" if match else "learner")
            await producer.send(
                MATCHING_MATCHES if match else ENROLMENT_EVENTS,
                ce.body(),
                key=str(key).encode(),
                headers=[(k, v.encode()) for k, v in ce.headers().items()],
            )
        await producer.flush()
    finally:
        await producer.stop()


def expected_summary(events: list[Any]) -> dict[str, Any]:
    """The summary the service must publish for these events (projected in memory, the
    service's default disclosure method): perturbed figures are still exactly known."""
    from services.reporting.domain.dimensions import Filters
    from services.reporting.settings import ReportingSettings
    from services.reporting.use_cases import queries
    from tests.security.seeded_population import InMemoryReportReader

    reader = InMemoryReportReader([ce.data for ce in events])
    filters = Filters(
        combined_authorities=(CombinedAuthority.GREATER_MANCHESTER.value,),
        month_from=f"{YEAR}-01",
        month_to=f"{YEAR}-12",
    )
    control = ReportingSettings().disclosure()
    return asyncio.run(queries.summary(reader, filters, control=control))


def expected_indicators(events: list[Any]) -> dict[str, Any]:
    """The Indicators of Integration report the service must publish for these events."""
    from services.reporting.domain.dimensions import Filters
    from services.reporting.integration_schemas import IndicatorsReport
    from services.reporting.settings import ReportingSettings
    from services.reporting.use_cases import integration_queries
    from tests.factories.reporting_integration import InMemoryIntegrationReader

    reader = InMemoryIntegrationReader([ce.data for ce in events])
    filters = Filters(
        combined_authorities=(CombinedAuthority.GREATER_MANCHESTER.value,),
        month_from=f"{YEAR}-01",
        month_to=f"{YEAR}-12",
    )
    report = asyncio.run(
        integration_queries.indicators(
            reader,
            filters,
            today=datetime.now(UTC).date(),
            control=ReportingSettings().disclosure(),
        )
    )
    return IndicatorsReport.model_validate(report).model_dump(mode="json", by_alias=True)


def wait_for_projection(base: str, events: list[Any]) -> None:
    deadline = time.monotonic() + 90
    params = {"from": f"{YEAR}-01", "to": f"{YEAR}-12"}
    headers = {"Authorization": f"Bearer {KEY}"}
    expected = expected_summary(events)
    indicators = expected_indicators(events)
    parts = ("enrolments", "matching", "waiting_list")
    while time.monotonic() < deadline:
        s = httpx.get(f"{base}/v1/reports/summary", params=params, headers=headers).json()
        i = httpx.get(f"{base}/v1/reports/indicators", params=params, headers=headers).json()
        if all(s[k] == expected[k] for k in parts) and i == indicators:
            return
        time.sleep(0.5)
    raise AssertionError("the service did not project the events in time")


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,2400",
        f"--user-data-dir={Path(os.environ.get('TMPDIR', '/tmp')) / unique('chromium-profile')}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=ChromeService(require_tool("chromedriver")), options=options)


def test_dashboard_shows_disclosure_controlled_numbers_from_real_events(
    service: str, infra: Infra
) -> None:
    require_tool("chromium")
    events, truth = scenario(random.Random(20240))
    asyncio.run(publish(infra.kafka_bootstrap_servers, events))
    wait_for_projection(service, events)

    driver = chromium()
    try:
        # A shareable view: filters in the address, the key typed into the sign-in form.
        driver.get(f"{service}/dashboard?from={YEAR}-01&to={YEAR}-12")
        wait = WebDriverWait(driver, 30)
        wait.until(ec.visibility_of_element_located((By.ID, "signin")))
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))

        kpis = {
            k.find_element(By.CLASS_NAME, "label").text: k.find_element(By.CLASS_NAME, "value").text
            for k in driver.find_elements(By.CSS_SELECTOR, "#kpis .kpi")
        }
        api = published_summary(service, **{"from": f"{YEAR}-01", "to": f"{YEAR}-12"})
        e = api["enrolments"]
        assert kpis["Started"] == str(e["started"])
        assert kpis["Completed"] == str(e["completed"])
        assert kpis["Achieved"] == str(e["achieved"])
        assert kpis["Matches confirmed"] == str(api["matching"]["confirmed"])
        assert kpis["Waiting for a match"] == str(api["waiting_list"]["waiting"])
        started = e["started"]
        assert started == "<10" or abs(started - truth["started"]) <= 5
        assert driver.find_element(By.ID, "who-name").text.startswith("Greater Manchester")

        la_chart = driver.find_element(By.ID, "chart-la").get_attribute("innerHTML") or ""
        for name in ("Bolton", "Manchester", "Oldham", "Wigan"):
            assert name in la_chart
        rows = {
            r.find_elements(By.TAG_NAME, "td")[0].text: [
                td.text for td in r.find_elements(By.TAG_NAME, "td")[1:]
            ]
            for r in driver.find_elements(By.CSS_SELECTOR, "#table-la tbody tr")
        }
        assert rows["Wigan"][0] == "<10"  # every borough listed; zero is a small count too
        assert rows["Total"][0] == str(started)  # the same records: the same figure
        every_cell = [cell for values in rows.values() for cell in values]
        counts = [c for c in every_cell if not c.endswith("%") and c != "withheld"]
        assert all(c == "<10" or int(c) % 5 == 0 for c in counts), counts
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-month svg rect")
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-esol svg rect")
        assert "rounded to the nearest 5" in driver.find_element(By.ID, "note").text

        ARTIFACTS.mkdir(exist_ok=True)
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        # The whole page in one picture: a viewport as tall as the document.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1440, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        check_integration_section(driver, service)

        # Filtering to one borough redraws from the API.
        Select(driver.find_element(By.ID, "f-la")).select_by_visible_text("Wigan")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#kpis .kpi .value").text == "<10")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#table-la tbody tr")) == 2
    finally:
        driver.quit()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def indicator_text(kind: str, v: dict[str, Any]) -> str:
    """How the dashboard shows a published indicator value."""
    if v["status"] == "not_yet_observable":
        return "not yet"
    if kind == "count":
        return str(v["value"])
    if v["value"] is None:
        return "withheld"
    if kind == "rate":
        return f"{v['value'] * 100:.1f}%"
    days = float(v["value"])
    return f"{int(days) if days.is_integer() else days} d"  # as JavaScript prints numbers


def check_integration_section(driver: webdriver.Chrome, base: str) -> None:
    """The Indicators of Integration section shows exactly the published figures, per
    borough, for the chosen quarter; unmeasured domains are listed; the other integration
    tables are drawn from their reports."""
    params = {"combined_authority": "", "from": f"{YEAR}-01", "to": f"{YEAR}-12"}
    headers = {"Authorization": f"Bearer {KEY}"}
    api = httpx.get(
        f"{base}/v1/reports/indicators",
        params={k: v for k, v in params.items() if v},
        headers=headers,
    ).json()
    kinds = {i["key"]: i["kind"] for i in api["indicators"]}
    quarters = [q["quarter"] for q in api["quarters"]]
    assert quarters == [f"{YEAR}-Q{q}" for q in (1, 2, 3, 4)]  # the range asked for

    def shown_rows() -> dict[str, dict[str, str]]:
        # One script call: the tables may be redrawn (e.g. on resize) between reads.
        rows: dict[str, dict[str, str]] = driver.execute_script(
            """
            const out = {};
            for (const tr of document.querySelectorAll("#table-indicators tbody tr")) {
              const cells = {};
              for (const td of tr.querySelectorAll("td[data-indicator]")) {
                cells[td.dataset.indicator] = td.textContent;
              }
              out[tr.dataset.la] = cells;
            }
            return out;
            """
        )
        return rows

    def published(quarter: str) -> dict[str, dict[str, str]]:
        return {
            row["local_authority"]: {
                k: indicator_text(kinds[k], v) for k, v in row["values"].items()
            }
            for row in [*api["rows"], *api["totals"]]
            if row["quarter"] == quarter
        }

    # The latest quarter with a published number is shown first.
    busy = [
        q
        for q in quarters
        if any(
            v["status"] == "published" and isinstance(v["value"], int | float)
            for row in [*api["rows"], *api["totals"]]
            if row["quarter"] == q
            for v in row["values"].values()
        )
    ]
    assert busy and busy[-1] != f"{YEAR}-Q1"
    chosen = Select(driver.find_element(By.ID, "f-quarter")).first_selected_option
    assert chosen.get_attribute("value") == busy[-1]
    rows = shown_rows()
    assert len(rows) == len(GM_LAS) + 1  # every borough, Wigan included, and the total
    assert rows == published(busy[-1])
    Select(driver.find_element(By.ID, "f-quarter")).select_by_value(f"{YEAR}-Q1")
    WebDriverWait(driver, 10).until(lambda d: shown_rows() == published(f"{YEAR}-Q1"))
    headings = driver.find_element(By.ID, "table-indicators").find_elements(
        By.CSS_SELECTOR, "th.domain"
    )
    assert [h.text for h in headings] == [
        "Language and communication",
        "Education",
        "Digital skills",
        "Social bridges",
    ]
    unmeasured = driver.find_element(By.ID, "unmeasured").text
    assert "Work:" in unmeasured and "EmpStat" in unmeasured and "Housing:" in unmeasured

    waiting = httpx.get(
        f"{base}/v1/reports/waiting",
        params={"from": f"{YEAR}-01", "to": f"{YEAR}-12", "by": "ethnic_group"},
        headers=headers,
    ).json()
    total: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#table-waiting tr.total td')]"
        ".map((td) => td.textContent)"
    )
    assert total[1:4] == [str(waiting["total"][k]) for k in ("opted_in", "waiting", "matched")]
    bridge_rows = driver.execute_script(
        "return document.querySelectorAll('#table-bridges tbody tr').length"
    )
    assert bridge_rows == 12
    assert "not an effect" in driver.find_element(By.ID, "comparison-caveat").text


def test_dashboard_page_is_a_static_shell_under_a_strict_policy(service: str) -> None:
    page = httpx.get(f"{service}/dashboard")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert '<script src="/dashboard/app.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing external
    js = httpx.get(f"{service}/dashboard/app.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "https://" not in js.text.replace("http://www.w3.org/2000/svg", "")
