"""One running platform (enrolment, matching, reporting: the real apps on the embedded
broker and database) shared by every security test module, with principals of every
role. Each run uses its own databases and consumer groups."""

from __future__ import annotations

import logging
import random
import string
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app as create_enrolment
from services.enrolment.settings import EnrolmentSettings
from services.matching.app import create_app as create_matching
from services.matching.settings import MatchingSettings
from services.reporting.app import create_app as create_reporting
from services.reporting.settings import ReportingSettings
from shared.auth import ApiKeyStore, Principal, Role, new_api_key
from shared.contracts.reference import CombinedAuthority
from tests.helpers import running_app, unique
from tests.infra import Infra, own_broker

GM = CombinedAuthority.GREATER_MANCHESTER
WM = CombinedAuthority.WEST_MIDLANDS
Doc = dict[str, Any]


def token(n: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(random.choices(alphabet, k=n))


def submission(**overrides: Any) -> Doc:
    """A valid ESOL submission (Oldham, Greater Manchester)."""
    doc: Doc = {
        "learner_ref": "S" + token(11),
        "given_names": "Test " + token(6, string.ascii_lowercase),
        "family_name": "Q" + token(8, string.ascii_lowercase),
        "postcode": "OL9 7ZZ",
        "date_of_birth": f"19{random.randint(50, 89)}-0{random.randint(1, 9)}-15",
        "sex": "F",
        "ethnicity": "asian_pakistani",
        "religion": "muslim",
        "country_of_birth": "PK",
        "first_language": "ur",
        "year_of_arrival": 2018,
        "combined_authority": GM.value,
        "local_authority": "E08000004",
        "learning_aim_ref": "Z" + token(7),
        "programme": "esol",
        "level": "entry_2",
        "start_date": "2025-09-08",
        "planned_end_date": "2026-07-10",
        "planned_hours": 120,
        "fund_model": 35,
    }
    doc.update(overrides)
    return doc


@dataclass
class Keys:
    provider_gm: str
    provider_wm: str
    dpo: str
    coordinator_gm: str
    coordinator_wm: str
    analyst: str
    matching_analyst: str
    reporting_provider: str


@dataclass
class Platform:
    infra: Infra
    enrolment: httpx.AsyncClient
    matching: httpx.AsyncClient
    reporting: httpx.AsyncClient
    enrolment_settings: EnrolmentSettings
    matching_settings: MatchingSettings
    reporting_settings: ReportingSettings
    enrolment_db: AsyncDatabase[Doc]
    matching_db: AsyncDatabase[Doc]
    reporting_db: AsyncDatabase[Doc]
    keys: Keys
    ukprn_gm: str
    ukprn_wm: str
    apps: dict[str, Any]
    logs: list[str]

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def _common(infra: Infra, service: str) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": infra.kafka_bootstrap_servers,
        "mongodb_url": infra.mongodb_url,
        "mongodb_database": unique(f"cg_{service}_sec"),
        "consumer_group": unique(f"{service}-sec"),
        "log_json": False,
        # The authorization suite fails authentication on purpose many times over.
        "auth_max_failures_per_window": 100_000,
    }


class Recorder(logging.Handler):
    """Every log line (message, arguments, exception text) while the suite runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + repr(record.__dict__))


@pytest.fixture(scope="package")
def infra(session_infra: Infra) -> Iterator[Infra]:
    """One broker for the whole security package (its platform is package-wide)."""
    with own_broker(session_infra) as running:
        yield running


@pytest_asyncio.fixture(scope="package")
async def platform(infra: Infra) -> AsyncIterator[Platform]:
    recorder = Recorder()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(recorder)
    root.setLevel(min(previous_level or logging.INFO, logging.INFO))
    enrolment_settings = EnrolmentSettings(
        **_common(infra, "enrolment"),
        outbox_poll_interval_s=0.1,
        outbox_linger_s=0.01,
        # Below the input-limit floods' 10 MB, so the ILR upload's own limit is exercised.
        ilr_max_upload_bytes=4 * 1024 * 1024,
    )
    matching_settings = MatchingSettings(
        **_common(infra, "matching"),
        scheduler_tick_s=3600,  # no optimiser runs: proposals are seeded where needed
        outbox_poll_interval_s=0.1,
    )
    reporting_settings = ReportingSettings(
        **_common(infra, "reporting"), projection_batch_timeout_ms=100
    )
    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    e_db = mongo[enrolment_settings.database_name]
    m_db = mongo[matching_settings.database_name]
    r_db = mongo[reporting_settings.database_name]

    admin = ProviderAdmin(e_db)
    await admin.ensure_indexes()
    ukprn_gm, ukprn_wm = "1" + token(7, string.digits), "1" + token(7, string.digits)
    provider_gm = await admin.register_provider("GM college", ukprn_gm, [GM.value])
    provider_wm = await admin.register_provider("WM college", ukprn_wm, [WM.value])
    dpo = await admin.register_data_protection("Data protection officer")

    keys = Keys(
        provider_gm=provider_gm,
        provider_wm=provider_wm,
        dpo=dpo,
        coordinator_gm=new_api_key(),
        coordinator_wm=new_api_key(),
        analyst=new_api_key(),
        matching_analyst=new_api_key(),
        reporting_provider=new_api_key(),
    )
    for db in (m_db, r_db):
        store = ApiKeyStore(db["api_keys"])
        await store.ensure_indexes()
        for key, ca in ((keys.coordinator_gm, GM), (keys.coordinator_wm, WM)):
            await store.add_key(
                Principal(
                    principal_id=f"coord-{ca.value}",
                    name=f"{ca.value} coordinator",
                    role=Role.COORDINATOR,
                    combined_authorities=(ca,),
                ),
                key,
            )
    await ApiKeyStore(m_db["api_keys"]).add_key(
        Principal(principal_id="an", name="Analyst", role=Role.ANALYST), keys.matching_analyst
    )
    reporting_keys = ApiKeyStore(r_db["api_keys"])
    await reporting_keys.add_key(
        Principal(principal_id="an", name="Analyst", role=Role.ANALYST), keys.analyst
    )
    await reporting_keys.add_key(
        Principal(principal_id="pr", name="College", role=Role.PROVIDER, ukprn=ukprn_gm),
        keys.reporting_provider,
    )

    apps = {
        "enrolment": create_enrolment(enrolment_settings),
        "matching": create_matching(matching_settings),
        "reporting": create_reporting(reporting_settings),
    }
    try:
        async with AsyncExitStack() as stack:
            clients = {
                name: await stack.enter_async_context(running_app(app))
                for name, app in apps.items()
            }
            yield Platform(
                infra=infra,
                enrolment=clients["enrolment"],
                matching=clients["matching"],
                reporting=clients["reporting"],
                enrolment_settings=enrolment_settings,
                matching_settings=matching_settings,
                reporting_settings=reporting_settings,
                enrolment_db=e_db,
                matching_db=m_db,
                reporting_db=r_db,
                keys=keys,
                ukprn_gm=ukprn_gm,
                ukprn_wm=ukprn_wm,
                apps=apps,
                logs=recorder.lines,
            )
    finally:
        root.removeHandler(recorder)
        root.setLevel(previous_level)
        await mongo.close()
