"""What the use cases ask of matching's store: one Protocol per aggregate (the MongoDB
adapter, :mod:`.mongo`, implements them all), and the values they exchange."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from services.matching.domain import (
    BackgroundFields,
    Match,
    MatchStatus,
    MatchTransition,
    Participant,
    Volunteer,
    Withdrawal,
)
from services.matching.domain.checkins import CheckIn
from services.matching.domain.health import MeetingRecord
from shared.cloudevents import Event
from shared.contracts.reference import CombinedAuthority


class Conflict(Exception):
    """The stored state changed under us (a concurrent writer); nothing was written."""


@dataclass(frozen=True)
class Outgoing:
    """An event to publish once the transaction that produced it commits."""

    topic: str
    key: str
    event: Event


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
    """The pool's participants (``participants``, ``inbox``)."""

    async def record_opt_in(self, ce_id: str, incoming: Participant) -> bool:
        """Add or update the participant; ``False`` if ``ce_id`` was already processed."""
        ...

    async def get_participant(self, participant: str) -> Participant | None: ...

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        """Matching consent given: keep this background for later runs."""
        ...

    async def waiting_participants(self, authority: CombinedAuthority) -> list[Participant]: ...

    async def withdraw_participant(
        self,
        participant: str,
        decide: Callable[[Participant, Sequence[Match]], Withdrawal],
        make_events: Callable[[Sequence[Match]], list[Outgoing]],
        now: datetime,
    ) -> list[Match] | None:
        """Apply ``decide`` (the domain's :func:`withdraw`) to the participant and their
        proposed and confirmed matches, and store its outcome with the events, atomically.
        Returns the matches closed, ``None`` if the participant is unknown."""
        ...


class VolunteerRepository(Protocol):
    """Volunteers and their DBS pauses (``volunteers``, ``volunteer_refs``)."""

    async def get_volunteer(self, volunteer_id: str) -> Volunteer | None: ...

    async def volunteer_by_ref(
        self, authority: CombinedAuthority, external_ref: str
    ) -> Volunteer | None: ...

    async def save_volunteer(
        self,
        volunteer: Volunteer,
        *,
        expected_version: int | None,
        events: Sequence[Outgoing],
        clear_dbs_flags: bool,
    ) -> None: ...

    async def volunteers_in(self, authority: CombinedAuthority) -> list[Volunteer]: ...

    async def volunteers_needing_dbs_notice(self, today: date) -> list[Volunteer]: ...

    async def pause_for_dbs_expiry(
        self, volunteer: Volunteer, make_event: Callable[[list[str]], Outgoing]
    ) -> list[str] | None:
        """Mark the lapsed DBS as announced, flag the volunteer's active matches and queue
        the event, atomically. ``None`` if it was already announced (idempotent)."""
        ...


class RunRepository(Protocol):
    """Optimiser runs: what is due, and committing a run's proposals (``runs``,
    ``schedule``)."""

    async def pool_stats(
        self, authority: CombinedAuthority, *, since: datetime | None, today: date
    ) -> PoolStats: ...

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None: ...

    async def commit_run(
        self, run: RunRecord, matches: Sequence[Match], events: Sequence[Outgoing], today: date
    ) -> None: ...


class MatchRepository(Protocol):
    """Proposals and matches, and their transitions (``matches``)."""

    async def get_match(self, match_id: str) -> Match | None: ...

    async def list_matches(self, query: MatchQuery) -> list[Match]: ...

    async def apply_transition(
        self, transition: MatchTransition, events: Sequence[Outgoing]
    ) -> None: ...


class CheckInRepository(Protocol):
    """Meetings of confirmed pairs (``check_ins``)."""

    async def record_check_in(
        self, check_in: CheckIn, events: Sequence[Outgoing]
    ) -> CheckIn | None:
        """Store a meeting with its event, atomically, while the match is still confirmed
        or ended. Returns the check-in already stored for that match and day instead
        (nothing written, no event), or ``None`` when it is new."""
        ...

    async def meetings(self, match_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        """Per match: how many meetings are recorded and the latest day."""
        ...

    async def check_ins(self, match_id: str) -> list[CheckIn]: ...


class LeaseRepository(Protocol):
    """One optimiser, DBS check and relay at a time across replicas (``leases``)."""

    async def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> bool: ...

    async def release_lease(self, name: str, owner: str) -> None: ...


class MatchingRepository(
    ParticipantRepository,
    VolunteerRepository,
    RunRepository,
    MatchRepository,
    CheckInRepository,
    LeaseRepository,
    Protocol,
):
    """All of matching's state (what the use cases are given)."""

    async def ensure_indexes(self) -> None: ...
