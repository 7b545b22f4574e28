"""Optimiser runs: which combined authorities are due, and one micro-batch over a whole
pool, committed with its proposals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime

from services.matching.domain import (
    Match,
    Participant,
    Proposal,
    Volunteer,
    VolunteerView,
    match_proposed,
    optimal_assignment,
    propose,
    total_score,
)
from services.matching.repository import Conflict, Outgoing, RunRecord, UnitOfWork
from services.matching.use_cases.base import UseCases, new_id
from shared.contracts.reference import CombinedAuthority
from shared.topics import MATCHING_MATCHES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    combined_authority: CombinedAuthority
    waiting: int
    volunteers: int
    proposals: tuple[Match, ...]
    committed: bool


class OptimiserUseCases(UseCases):
    """The batch scheduler's use cases."""

    async def tick(self, *, acquire: Callable[[str], Awaitable[bool]] | None = None) -> int:
        """Evaluate the batch policy for every combined authority; run those due.
        ``acquire(name)`` guards each run with a lease when several replicas run."""
        now = self.clock()
        made = 0
        runs = self.uow().runs
        for authority in CombinedAuthority:
            last = await runs.last_run_at(authority)
            stats = await runs.pool_stats(authority, since=last, today=now.date())
            self.metrics.pool_size.labels(authority.value, "participants_waiting").set(
                stats.waiting
            )
            self.metrics.pool_size.labels(authority.value, "volunteers_available").set(
                stats.volunteers_available
            )
            due = stats.volunteers_available > 0 and self.policy.should_run(
                now=now, last_run_at=last, waiting=stats.waiting, arrived=stats.arrived
            )
            if not due:
                continue
            if acquire is not None and not await acquire(f"optimiser:{authority.value}"):
                continue
            outcome = await self.run_batch(authority)
            made += len(outcome.proposals) if outcome.committed else 0
        return made

    async def run_batch(self, authority: CombinedAuthority) -> RunOutcome:
        """One micro-batch: optimal assignment over the authority's whole pool, decided
        on committed data, then written with its proposals in one transaction."""
        started = self.clock()
        today = started.date()
        volunteers, participants = await self._load_pool(authority, today)
        volunteer_views = [v.view() for v in volunteers]
        proposals, duration = await self._optimise(
            authority, volunteer_views, participants, today=today, now=started
        )
        run_id = new_id("run")
        matches = proposed_matches(proposals, volunteer_views, participants, run_id, now=started)
        run = RunRecord(
            run_id=run_id,
            combined_authority=authority,
            started_at=started,
            finished_at=self.clock(),
            waiting=len(participants),
            volunteers=len(volunteers),
            proposals=len(matches),
            duration_s=duration,
            total_score=total_score(proposals),
        )
        if not await self._write_run(run, matches, today):
            return RunOutcome(run_id, authority, run.waiting, run.volunteers, (), False)
        self._count_committed(run)
        if matches:
            self.on_commit()
        return RunOutcome(run_id, authority, run.waiting, run.volunteers, matches, True)

    async def _load_pool(
        self, authority: CombinedAuthority, today: date
    ) -> tuple[list[Volunteer], list[Participant]]:
        """The authority's volunteers able to take a match ``today`` and its waiting
        participants, as committed (read outside any transaction)."""
        pool = self.uow()
        volunteers = [
            v
            for v in await pool.volunteers.in_authority(authority)
            if v.dbs_valid(today) and v.free_capacity > 0
        ]
        return volunteers, await pool.participants.waiting(authority)

    async def _optimise(
        self,
        authority: CombinedAuthority,
        volunteers: list[VolunteerView],
        participants: list[Participant],
        *,
        today: date,
        now: datetime,
    ) -> tuple[list[Proposal], float]:
        """The optimal assignment and how long it took (in a thread: it is CPU-bound)."""
        weights = self.weights.for_authority(authority)
        participant_views = [p.view() for p in participants]
        t0 = time.perf_counter()
        proposals = await asyncio.to_thread(
            optimal_assignment, volunteers, participant_views, weights, today=today, now=now
        )
        duration = time.perf_counter() - t0
        self.metrics.optimiser_duration.labels(authority.value).observe(duration)
        return proposals, duration

    async def _write_run(self, run: RunRecord, matches: tuple[Match, ...], today: date) -> bool:
        """Write the proposals, the places they book and the run in one transaction,
        publishing a MatchProposed per match; ``False`` if it conflicted (nothing kept)."""
        # Built once, outside the transaction: a retried attempt publishes the same
        # events (the same CloudEvent ids).
        events = [
            Outgoing(MATCHING_MATCHES, m.local_authority, match_proposed(m)).message(
                run.finished_at
            )
            for m in matches
        ]
        places = places_booked(matches)

        async def commit(uow: UnitOfWork) -> None:
            # The run was decided on committed data outside the transaction (the
            # optimiser is too slow to hold one open): each write checks that what it
            # relied on still holds, and a change since discards the whole run.
            if matches:
                await uow.participants.mark_proposed(matches)
                await uow.volunteers.book(places, today)
                await uow.matches.add(matches)
                uow.publish(events)
            await uow.runs.add(run)

        authority = run.combined_authority.value
        try:
            await self.uow().run(commit)
        except Conflict as exc:
            self.metrics.runs.labels(authority, "conflict").inc()
            logger.info("optimiser run %s for %s discarded: %s", run.run_id, authority, exc)
            return False
        return True

    def _count_committed(self, run: RunRecord) -> None:
        """Metrics and a log line for a committed run."""
        authority = run.combined_authority.value
        self.metrics.runs.labels(authority, "committed").inc()
        self.metrics.run_proposals.labels(authority).observe(run.proposals)
        self.metrics.proposals.labels(authority).inc(run.proposals)
        logger.info(
            "optimiser run %s for %s: %d waiting, %d volunteers, %d proposals in %.3fs",
            run.run_id,
            authority,
            run.waiting,
            run.volunteers,
            run.proposals,
            run.duration_s,
        )


def proposed_matches(
    proposals: list[Proposal],
    volunteers: list[VolunteerView],
    participants: list[Participant],
    run_id: str,
    *,
    now: datetime,
) -> tuple[Match, ...]:
    """A proposed match per proposal of run ``run_id``."""
    by_volunteer = {v.volunteer_id: v for v in volunteers}
    by_participant = {p.participant: p for p in participants}
    return tuple(
        propose(
            pr,
            by_volunteer[pr.volunteer_id],
            by_participant[pr.participant],
            match_id=new_id("match"),
            run_id=run_id,
            now=now,
        )
        for pr in proposals
    )


def places_booked(matches: tuple[Match, ...]) -> dict[str, int]:
    """How many new matches each volunteer takes."""
    places: dict[str, int] = {}
    for m in matches:
        places[m.volunteer_id] = places.get(m.volunteer_id, 0) + 1
    return places
