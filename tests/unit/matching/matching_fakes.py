"""An in-memory unit of work for matching's use cases, of the shape of
``services.matching.unit_of_work.MatchingUnitOfWork``: repositories over one shared
:class:`MatchingState`, and ``run`` keeping the work's writes and published events only
if it returns (a raising work leaves the state as it was)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Self, TypeVar

from services.matching.domain import (
    ACTIVE_MATCH_STATUSES,
    BackgroundFields,
    Match,
    MatchStatus,
    MatchTransition,
    Participant,
    ParticipantStatus,
    Volunteer,
)
from services.matching.domain.checkins import CheckIn
from services.matching.domain.health import MeetingRecord
from services.matching.repository import Conflict, MatchQuery, PoolStats, RunRecord
from shared.cloudevents import CloudEvent, Event, EventRegistry
from shared.contracts.reference import CombinedAuthority
from shared.contracts.registry import all_events
from shared.outbox import OutboxMessage

T = TypeVar("T")
_EVENTS = EventRegistry(*all_events())


@dataclass
class MatchingState:
    """What matching's database holds, and the events committed to its outbox."""

    participants: dict[str, Participant] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    inbox: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    volunteers: dict[str, Volunteer] = field(default_factory=dict)
    volunteer_refs: dict[tuple[CombinedAuthority, str], str] = field(default_factory=dict)
    matches: dict[str, Match] = field(default_factory=dict)
    check_ins: dict[str, CheckIn] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    schedule: dict[CombinedAuthority, datetime] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    transactions: int = 0
    """Units of work committed."""

    def published(self) -> list[CloudEvent[Event]]:
        """The outbox's events, decoded."""
        return [_EVENTS.decode(m.body.encode(), m.headers) for m in self.outbox]


class _Repo:
    def __init__(self, state: MatchingState) -> None:
        self.state = state


class FakeParticipants(_Repo):
    async def get(self, participant: str) -> Participant | None:
        return self.state.participants.get(participant)

    async def save(self, participant: Participant) -> None:
        self.state.participants[participant.participant] = participant
        self.state.erased.discard(participant.participant)  # a replace drops the marker

    async def update(self, participant: Participant, *, erased: bool) -> None:
        if participant.participant in self.state.participants:
            self.state.participants[participant.participant] = participant
            if erased:
                self.state.erased.add(participant.participant)

    async def save_transition(self, transition: MatchTransition) -> None:
        m = transition.match
        p = self.state.participants.get(m.participant)
        if p is None or p.status is not transition.participant_from:
            raise Conflict(f"participant of match {m.match_id} changed concurrently")
        p = replace(p, status=transition.participant_to)
        if transition.restart_wait:
            p = replace(p, waiting_since=transition.at)
        if transition.reenter_pool:
            p = replace(p, pool_entered_at=transition.at)
        if transition.exclude_as == "declined" and m.volunteer_id not in p.declined_volunteers:
            p = replace(p, declined_volunteers=(*p.declined_volunteers, m.volunteer_id))
        elif transition.exclude_as == "previous" and m.volunteer_id not in p.previous_volunteers:
            p = replace(p, previous_volunteers=(*p.previous_volunteers, m.volunteer_id))
        self.state.participants[m.participant] = p

    async def mark_proposed(self, matches: Sequence[Match]) -> None:
        for m in matches:
            p = self.state.participants.get(m.participant)
            if (
                p is None
                or p.status is not ParticipantStatus.WAITING
                or p.combined_authority is not m.combined_authority
            ):
                raise Conflict("a participant left the pool during the optimiser run")
            self.state.participants[m.participant] = replace(p, status=ParticipantStatus.PROPOSED)

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        p = self.state.participants.get(participant)
        if p is None or participant in self.state.erased:
            return False
        self.state.participants[participant] = replace(
            p, consent_matching=True, background=background
        )
        return True

    async def waiting(self, authority: CombinedAuthority) -> list[Participant]:
        return sorted(
            (
                p
                for p in self.state.participants.values()
                if p.combined_authority is authority and p.status is ParticipantStatus.WAITING
            ),
            key=lambda p: (p.waiting_since, p.participant),
        )


class FakeInbox(_Repo):
    async def seen(self, ce_id: str) -> bool:
        return ce_id in self.state.inbox

    async def record(self, ce_id: str, kind: str, received_at: datetime) -> None:
        assert ce_id not in self.state.inbox, "a duplicate key aborts the transaction"
        self.state.inbox[ce_id] = (kind, received_at)


class FakeVolunteers(_Repo):
    async def get(self, volunteer_id: str) -> Volunteer | None:
        return self.state.volunteers.get(volunteer_id)

    async def by_ref(self, authority: CombinedAuthority, external_ref: str) -> Volunteer | None:
        volunteer_id = self.state.volunteer_refs.get((authority, external_ref))
        return self.state.volunteers.get(volunteer_id) if volunteer_id else None

    async def add(self, volunteer: Volunteer) -> None:
        if volunteer.volunteer_id in self.state.volunteers:
            raise Conflict(f"volunteer {volunteer.volunteer_id} already exists")
        self.state.volunteers[volunteer.volunteer_id] = replace(
            volunteer, active=0, dbs_expiry_notified_for=None
        )
        if volunteer.external_ref is not None:
            ref = (volunteer.combined_authority, volunteer.external_ref)
            if ref in self.state.volunteer_refs:
                raise Conflict("a volunteer with this external_ref was registered concurrently")
            self.state.volunteer_refs[ref] = volunteer.volunteer_id

    async def save(self, volunteer: Volunteer, *, expected_version: int) -> None:
        stored = self.state.volunteers.get(volunteer.volunteer_id)
        if stored is None or stored.version != expected_version:
            raise Conflict(f"volunteer {volunteer.volunteer_id} changed concurrently")
        self.state.volunteers[volunteer.volunteer_id] = replace(
            volunteer,
            registered_at=stored.registered_at,
            active=stored.active,
            dbs_expiry_notified_for=stored.dbs_expiry_notified_for,
        )

    async def add_active(self, volunteer_id: str, delta: int) -> None:
        v = self.state.volunteers.get(volunteer_id)
        if v is not None:
            self.state.volunteers[volunteer_id] = replace(v, active=v.active + delta)

    async def book(self, places: dict[str, int], today: date) -> None:
        for volunteer_id, k in sorted(places.items()):
            v = self.state.volunteers.get(volunteer_id)
            if v is None or not v.dbs_valid(today) or v.active + k > v.capacity:
                raise Conflict("a volunteer's capacity or DBS changed during the optimiser run")
            self.state.volunteers[volunteer_id] = replace(v, active=v.active + k)

    async def mark_dbs_notified(self, volunteer: Volunteer) -> bool:
        v = self.state.volunteers.get(volunteer.volunteer_id)
        expired_on = volunteer.dbs_expires_on
        if v is None or v.dbs_expires_on != expired_on or v.dbs_expiry_notified_for == expired_on:
            return False
        self.state.volunteers[v.volunteer_id] = replace(v, dbs_expiry_notified_for=expired_on)
        return True

    async def in_authority(self, authority: CombinedAuthority) -> list[Volunteer]:
        return sorted(
            (v for v in self.state.volunteers.values() if v.combined_authority is authority),
            key=lambda v: v.volunteer_id,
        )

    async def needing_dbs_notice(self, today: date) -> list[Volunteer]:
        return sorted(
            (
                v
                for v in self.state.volunteers.values()
                if v.dbs_expires_on < today and v.dbs_expiry_notified_for != v.dbs_expires_on
            ),
            key=lambda v: v.volunteer_id,
        )


class FakeRuns(_Repo):
    async def pool_stats(
        self, authority: CombinedAuthority, *, since: datetime | None, today: date
    ) -> PoolStats:
        waiting = [
            p
            for p in self.state.participants.values()
            if p.combined_authority is authority and p.status is ParticipantStatus.WAITING
        ]
        arrived = [p for p in waiting if since is None or p.pool_entered_at > since]
        available = [
            v
            for v in self.state.volunteers.values()
            if v.combined_authority is authority and v.dbs_valid(today) and v.active < v.capacity
        ]
        return PoolStats(len(waiting), len(arrived), len(available))

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None:
        return self.state.schedule.get(authority)

    async def add(self, run: RunRecord) -> None:
        self.state.runs.append(run)
        self.state.schedule[run.combined_authority] = run.started_at


class FakeMatches(_Repo):
    async def get(self, match_id: str) -> Match | None:
        return self.state.matches.get(match_id)

    async def find(self, query: MatchQuery) -> list[Match]:
        found = [
            m
            for m in self.state.matches.values()
            if m.combined_authority in query.authorities
            and query.local_authority in (None, m.local_authority)
            and query.status in (None, m.status)
            and query.volunteer_id in (None, m.volunteer_id)
        ]
        found.sort(key=lambda m: m.match_id)
        found.sort(key=lambda m: m.proposed_at, reverse=True)
        return found[query.offset : query.offset + query.limit]

    async def active_of_participant(self, participant: str) -> list[Match]:
        return sorted(
            (
                m
                for m in self.state.matches.values()
                if m.participant == participant and m.status in ACTIVE_MATCH_STATUSES
            ),
            key=lambda m: m.match_id,
        )

    async def active_ids_of_volunteer(self, volunteer_id: str) -> list[str]:
        return sorted(
            m.match_id
            for m in self.state.matches.values()
            if m.volunteer_id == volunteer_id and m.status in ACTIVE_MATCH_STATUSES
        )

    async def add(self, matches: Sequence[Match]) -> None:
        for m in matches:
            assert m.match_id not in self.state.matches
            self.state.matches[m.match_id] = m

    async def save(self, match: Match, *, expected_status: MatchStatus) -> None:
        stored = self.state.matches.get(match.match_id)
        if stored is None or stored.status is not expected_status:
            raise Conflict(f"match {match.match_id} changed concurrently")
        self.state.matches[match.match_id] = match

    async def add_flag(self, match_ids: Sequence[str], flag: str) -> None:
        for match_id in match_ids:
            m = self.state.matches[match_id]
            if flag not in m.flags:
                self.state.matches[match_id] = replace(m, flags=(*m.flags, flag))

    async def clear_volunteer_flag(self, volunteer_id: str, flag: str) -> None:
        for m in list(self.state.matches.values()):
            if m.volunteer_id == volunteer_id and flag in m.flags:
                flags = tuple(f for f in m.flags if f != flag)
                self.state.matches[m.match_id] = replace(m, flags=flags)


class FakeCheckIns(_Repo):
    async def get(self, check_in_id: str) -> CheckIn | None:
        return self.state.check_ins.get(check_in_id)

    async def add(self, check_in: CheckIn) -> None:
        assert check_in.check_in_id not in self.state.check_ins
        self.state.check_ins[check_in.check_in_id] = check_in

    async def meetings(self, match_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        out: dict[str, MeetingRecord] = {}
        for c in self.state.check_ins.values():
            if c.match_id in match_ids:
                seen = out.get(c.match_id, MeetingRecord())
                last = max(d for d in (seen.last_met_on, c.met_on) if d is not None)
                out[c.match_id] = MeetingRecord(check_ins=seen.check_ins + 1, last_met_on=last)
        return out

    async def of_match(self, match_id: str) -> list[CheckIn]:
        return sorted(
            (c for c in self.state.check_ins.values() if c.match_id == match_id),
            key=lambda c: c.met_on,
        )


class FakeUnitOfWork:
    """One use case's unit of work over ``state``."""

    def __init__(self, state: MatchingState) -> None:
        self.state = state
        self.participants = FakeParticipants(state)
        self.inbox = FakeInbox(state)
        self.volunteers = FakeVolunteers(state)
        self.runs = FakeRuns(state)
        self.matches = FakeMatches(state)
        self.check_ins = FakeCheckIns(state)
        self.now = datetime.now(UTC)
        self._messages: list[OutboxMessage] = []

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self._messages.extend(messages)

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        before = copy.deepcopy(self.state)
        self._messages = []
        self.now = datetime.now(UTC)
        try:
            result = await work(self)
        except BaseException:
            # Like an aborted transaction: nothing the work wrote is kept.
            self._restore(before)
            raise
        finally:
            published, self._messages = self._messages, []
        self.state.outbox.extend(published)
        self.state.transactions += 1
        return result

    def _restore(self, before: MatchingState) -> None:
        # In place: every repository (and the test) holds this very state object.
        for name in vars(before):
            setattr(self.state, name, getattr(before, name))


def unit_of_work_factory(state: MatchingState) -> Callable[[], FakeUnitOfWork]:
    """A new unit of work over ``state`` per use-case call."""
    return lambda: FakeUnitOfWork(state)
