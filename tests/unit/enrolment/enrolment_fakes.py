"""In-memory fakes behind the enrolment repository protocols, and sample submissions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from services.enrolment.domain import Enrolment, Provider, Pseudonymiser
from services.enrolment.repository import AlreadyExists, VersionConflict
from shared.contracts.reference import CombinedAuthority
from shared.outbox import OutboxMessage

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TODAY = NOW.date()

GM = CombinedAuthority.GREATER_MANCHESTER
WM = CombinedAuthority.WEST_MIDLANDS


def submission(**overrides: Any) -> dict[str, Any]:
    """A valid ESOL submission for Oldham (Greater Manchester)."""
    base: dict[str, Any] = {
        "submission_ref": "row-1",
        "learner_ref": "LRN0001",
        "given_names": "Amira",
        "family_name": "Haddad",
        "postcode": "OL1 1AA",
        "date_of_birth": "1988-05-17",
        "sex": "F",
        "ethnicity": "other_arab",
        "religion": "muslim",
        "country_of_birth": "SY",
        "first_language": "ar",
        "year_of_arrival": 2019,
        "combined_authority": "E47000001",
        "local_authority": "E08000004",
        "learning_aim_ref": "ZESOL002",
        "programme": "esol",
        "level": "entry_2",
        "start_date": "2025-09-08",
        "planned_end_date": "2026-07-10",
        "planned_hours": 180,
        "fund_model": 35,
        "consent": {"matching": True, "research": False},
        "wants_conversation_partner": True,
        "availability": ["tue-pm", "sat-am"],
        "interests": ["cooking", "football"],
    }
    base.update(overrides)
    return base


PROVIDER = Provider("provider:10012345", "10012345", frozenset({GM}))
OTHER_PROVIDER = Provider("provider:10054321", "10054321", frozenset({WM}))
PSEUDONYMS = Pseudonymiser(b"unit-test-key")


class FakeEnrolments:
    """EnrolmentRepository in memory; records each write call to check batching."""

    def __init__(self) -> None:
        self.docs: dict[str, Enrolment] = {}
        self.outbox: list[OutboxMessage] = []
        self.insert_calls = 0
        self.race: list[Enrolment] = []  # inserted "concurrently" before the next insert

    async def ensure_indexes(self) -> None:
        return None

    async def get(self, enrolment_id: str) -> Enrolment | None:
        return self.docs.get(enrolment_id)

    async def fingerprints(self, enrolment_ids: Sequence[str]) -> dict[str, str]:
        return {i: self.docs[i].fingerprint for i in enrolment_ids if i in self.docs}

    async def insert(
        self, enrolments: Sequence[Enrolment], outbox: Sequence[OutboxMessage]
    ) -> None:
        self.insert_calls += 1
        for other in self.race:
            self.docs[other.enrolment_id] = other
        self.race = []
        if any(e.enrolment_id in self.docs for e in enrolments):
            raise AlreadyExists("duplicate")
        for e in enrolments:
            self.docs[e.enrolment_id] = e
        self.outbox.extend(outbox)

    async def save_transition(
        self, enrolment: Enrolment, expected_version: int, outbox: Sequence[OutboxMessage]
    ) -> None:
        current = self.docs[enrolment.enrolment_id]
        if current.version != expected_version:
            raise VersionConflict(enrolment.enrolment_id)
        self.docs[enrolment.enrolment_id] = replace(enrolment, version=expected_version + 1)
        self.outbox.extend(outbox)


class FakeProviders:
    def __init__(self, *providers: Provider) -> None:
        self.by_ukprn = {p.ukprn: p for p in providers}

    async def by_ukprns(self, ukprns: Sequence[str]) -> dict[str, Provider]:
        return {u: self.by_ukprn[u] for u in ukprns if u in self.by_ukprn}


def day(text: str) -> date:
    return date.fromisoformat(text)
