"""In-memory fakes of the enrolment unit of work and its repositories, and sample
submissions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Self, TypeVar

from services.enrolment.domain import Enrolment, Provider, Pseudonymiser
from services.enrolment.repository import AlreadyExists, VersionConflict
from shared.contracts.reference import CombinedAuthority
from shared.outbox import OutboxMessage

T = TypeVar("T")

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
    """The enrolments and outbox in memory, written through :class:`FakeUnitOfWork`s
    (``unit_of_work`` is the factory); records each write call to check batching."""

    def __init__(self) -> None:
        self.docs: dict[str, Enrolment] = {}
        self.outbox: list[OutboxMessage] = []
        self.withdrawn: list[tuple[str, str]] = []
        self.erased: dict[str, dict[str, Any]] = {}
        self.insert_calls = 0
        self.race: list[Enrolment] = []  # inserted "concurrently" before the next insert
        self.save_race: list[Enrolment] = []  # saved "concurrently" before the next save

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


class _StagedEnrolments:
    """One unit of work's view: the committed documents with its own writes on top."""

    def __init__(self, store: FakeEnrolments) -> None:
        self._store = store
        self.writes: dict[str, Enrolment] = {}

    def _current(self, enrolment_id: str) -> Enrolment | None:
        if enrolment_id in self.writes:
            return self.writes[enrolment_id]
        return self._store.docs.get(enrolment_id)

    async def get(self, enrolment_id: str) -> Enrolment | None:
        return self._current(enrolment_id)

    async def get_many(self, enrolment_ids: Sequence[str]) -> dict[str, Enrolment]:
        found = {i: self._current(i) for i in enrolment_ids}
        return {i: e for i, e in found.items() if e is not None}

    async def fingerprints(self, enrolment_ids: Sequence[str]) -> dict[str, str]:
        return {i: e.fingerprint for i, e in (await self.get_many(enrolment_ids)).items()}

    async def add(self, enrolments: Sequence[Enrolment]) -> None:
        self._store.insert_calls += 1
        for other in self._store.race:
            self._store.docs[other.enrolment_id] = other
        self._store.race = []
        if any(self._current(e.enrolment_id) is not None for e in enrolments):
            raise AlreadyExists("duplicate")
        self.writes.update({e.enrolment_id: e for e in enrolments})

    async def save(self, enrolment: Enrolment, expected_version: int) -> None:
        await self.save_many([(enrolment, expected_version)])

    async def save_many(self, changed: Sequence[tuple[Enrolment, int]]) -> None:
        for other in self._store.save_race:
            self._store.docs[other.enrolment_id] = other
        self._store.save_race = []
        for enrolment, version in changed:
            current = self._current(enrolment.enrolment_id)
            if current is None or current.version != version:
                raise VersionConflict(enrolment.enrolment_id)
        for enrolment, version in changed:
            self.writes[enrolment.enrolment_id] = replace(enrolment, version=version + 1)


class _StagedErasures:
    def __init__(self, store: FakeEnrolments) -> None:
        self._store = store
        self.erased: dict[str, dict[str, Any]] = {}

    async def get(self, learner: str) -> dict[str, Any] | None:
        return self.erased.get(learner, self._store.erased.get(learner))

    async def erase(self, learner: str, enrolments: Sequence[tuple[str, str]], by: str) -> None:
        ids = [e for e, _ in enrolments]
        self.erased[learner] = {"_id": learner, "erased_by": by, "enrolment_ids": ids}


class FakeUnitOfWork:
    """A unit of work in memory: what its work wrote and published is kept only if the
    work returns (all or nothing, like the transaction)."""

    def __init__(self, store: FakeEnrolments) -> None:
        self._store = store
        self.now = datetime.now(UTC)
        self._enrolments = _StagedEnrolments(store)
        self._erasures = _StagedErasures(store)
        self._messages: list[OutboxMessage] = []
        self._withdrawn: list[tuple[str, str]] = []

    @property
    def enrolments(self) -> _StagedEnrolments:
        return self._enrolments

    @property
    def erasures(self) -> _StagedErasures:
        return self._erasures

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self._messages.extend(messages)

    async def withdraw(self, key: str, ce_type: str) -> None:
        self._withdrawn.append((key, ce_type))

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        self._enrolments = _StagedEnrolments(self._store)
        self._erasures = _StagedErasures(self._store)
        self._messages, self._withdrawn = [], []
        result = await work(self)
        store = self._store
        store.docs.update(self._enrolments.writes)
        store.erased.update(self._erasures.erased)
        store.withdrawn.extend(self._withdrawn)
        store.outbox.extend(self._messages)
        return result


class FakeProviders:
    def __init__(self, *providers: Provider) -> None:
        self.by_ukprn = {p.ukprn: p for p in providers}

    async def by_ukprns(self, ukprns: Sequence[str]) -> dict[str, Provider]:
        return {u: self.by_ukprn[u] for u in ukprns if u in self.by_ukprn}


def day(text: str) -> date:
    return date.fromisoformat(text)
