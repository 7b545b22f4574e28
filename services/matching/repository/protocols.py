"""What the use cases ask of matching's store: one repository Protocol per aggregate,
all bound to one unit of work (:class:`UnitOfWork`; the MongoDB adapters are in
:mod:`.mongo`), and the values they exchange. Repositories only get and save: what to
write is decided by the use cases and the domain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol, Self, TypeVar

from services.matching.domain import (
    BackgroundFields,
    Match,
    MatchStatus,
    MatchTransition,
    Participant,
    Volunteer,
)
from services.matching.domain.checkins import CheckIn
from services.matching.domain.health import MeetingRecord
from shared.cloudevents import CloudEvent, Event
from shared.contracts.reference import CombinedAuthority
from shared.outbox import OutboxMessage

EVENT_SOURCE = "/commonground/matching"
T = TypeVar("T")


class Conflict(Exception):
    """The stored state changed under us (a concurrent writer); nothing was written."""


@dataclass(frozen=True)
class Outgoing:
    """An event to publish once the transaction that produced it commits."""

    topic: str
    key: str
    event: Event

    def message(self, at: datetime) -> OutboxMessage:
        """The outbox message announcing it (CloudEvent time ``at``)."""
        return OutboxMessage.of(
            CloudEvent(data=self.event, source=EVENT_SOURCE, time=at),
            topic=self.topic,
            key=self.key,
        )


@dataclass(frozen=True)
class PoolStats:
    waiting: int
    arrived: int
    """Waiting people who entered the pool after the ``since`` instant."""
    volunteers_available: int


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    combined_authority: CombinedAuthority
    started_at: datetime
    finished_at: datetime
    waiting: int
    volunteers: int
    proposals: int
    duration_s: float
    total_score: float


@dataclass(frozen=True)
class MatchQuery:
    authorities: Sequence[CombinedAuthority]
    local_authority: str | None = None
    status: MatchStatus | None = None
    volunteer_id: str | None = None
    limit: int = 100
    offset: int = 0


class ParticipantRepository(Protocol):
    """The pool's participants (``participants``)."""

    async def get(self, participant: str) -> Participant | None: ...

    async def save(self, participant: Participant) -> None:
        """Store the whole record (added if new)."""
        ...

    async def update(self, participant: Participant, *, erased: bool) -> None:
        """Overwrite the record's fields (others, such as the erasure marker, are kept);
        ``erased`` marks the learner as erased."""
        ...

    async def save_transition(self, transition: MatchTransition) -> None:
        """The participant's side of a match transition, while they are still in
        ``participant_from`` (:class:`Conflict` otherwise)."""
        ...

    async def mark_proposed(self, matches: Sequence[Match]) -> None:
        """Each match's participant, still waiting, becomes proposed (:class:`Conflict`
        if one is not)."""
        ...

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        """Matching consent given: keep this background for later runs (not for an
        erased learner). ``False`` if the participant is unknown."""
        ...

    async def waiting(self, authority: CombinedAuthority) -> list[Participant]: ...


class InboxRepository(Protocol):
    """Enrolment events already processed, by CloudEvent id (``inbox``)."""

    async def seen(self, ce_id: str) -> bool: ...

    async def record(self, ce_id: str, kind: str, received_at: datetime) -> None: ...


class VolunteerRepository(Protocol):
    """Volunteers (``volunteers``, ``volunteer_refs``)."""

    async def get(self, volunteer_id: str) -> Volunteer | None: ...

    async def by_ref(self, authority: CombinedAuthority, external_ref: str) -> Volunteer | None: ...

    async def add(self, volunteer: Volunteer) -> None:
        """A new volunteer, claiming its external reference (:class:`Conflict` if the id
        or the reference is taken)."""
        ...

    async def save(self, volunteer: Volunteer, *, expected_version: int) -> None:
        """The coordinator-owned fields, if still at ``expected_version``
        (:class:`Conflict` otherwise)."""
        ...

    async def add_active(self, volunteer_id: str, delta: int) -> None:
        """Change the count of the volunteer's active matches."""
        ...

    async def book(self, places: dict[str, int], today: date) -> None:
        """Take ``places[volunteer_id]`` more matches for each volunteer, within capacity
        and with a DBS check valid ``today`` (:class:`Conflict` otherwise)."""
        ...

    async def mark_dbs_notified(self, volunteer: Volunteer) -> bool:
        """Note the lapse of the volunteer's DBS date as announced; ``False`` if it
        already was (or the date changed since)."""
        ...

    async def in_authority(self, authority: CombinedAuthority) -> list[Volunteer]: ...

    async def needing_dbs_notice(self, today: date) -> list[Volunteer]: ...


class RunRepository(Protocol):
    """Optimiser runs: what is due, and the runs made (``runs``, ``schedule``)."""

    async def pool_stats(
        self, authority: CombinedAuthority, *, since: datetime | None, today: date
    ) -> PoolStats: ...

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None: ...

    async def add(self, run: RunRecord) -> None:
        """The run, and it as its authority's last."""
        ...


class MatchRepository(Protocol):
    """Proposals and matches (``matches``)."""

    async def get(self, match_id: str) -> Match | None: ...

    async def find(self, query: MatchQuery) -> list[Match]: ...

    async def active_of_participant(self, participant: str) -> list[Match]:
        """Their proposed and confirmed matches, by id."""
        ...

    async def active_ids_of_volunteer(self, volunteer_id: str) -> list[str]:
        """The ids of their proposed and confirmed matches, sorted."""
        ...

    async def add(self, matches: Sequence[Match]) -> None: ...

    async def save(self, match: Match, *, expected_status: MatchStatus) -> None:
        """Store the match if it is still ``expected_status`` (:class:`Conflict`
        otherwise)."""
        ...

    async def add_flag(self, match_ids: Sequence[str], flag: str) -> None: ...

    async def clear_volunteer_flag(self, volunteer_id: str, flag: str) -> None:
        """Remove ``flag`` from every match of the volunteer."""
        ...


class CheckInRepository(Protocol):
    """Meetings of confirmed pairs (``check_ins``)."""

    async def get(self, check_in_id: str) -> CheckIn | None: ...

    async def add(self, check_in: CheckIn) -> None: ...

    async def meetings(self, match_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        """Per match: how many meetings are recorded and the latest day."""
        ...

    async def of_match(self, match_id: str) -> list[CheckIn]: ...


class LeaseRepository(Protocol):
    """One optimiser, DBS check and relay at a time across replicas (``leases``)."""

    async def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> bool: ...

    async def release_lease(self, name: str, owner: str) -> None: ...


class UnitOfWork(Protocol):
    """One use case's transaction (``shared.unit_of_work``) and the repositories that
    read and write in it. Outside :meth:`run` they read committed data."""

    @property
    def participants(self) -> ParticipantRepository: ...

    @property
    def inbox(self) -> InboxRepository: ...

    @property
    def volunteers(self) -> VolunteerRepository: ...

    @property
    def runs(self) -> RunRepository: ...

    @property
    def matches(self) -> MatchRepository: ...

    @property
    def check_ins(self) -> CheckInRepository: ...

    @property
    def now(self) -> datetime: ...

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue events, written with the transaction's changes when the work ends."""
        ...

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction (again from the start on a transient error)."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
"""A new unit of work per use-case call."""
