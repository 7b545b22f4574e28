"""Optimiser runs: which combined authorities are due, and one micro-batch over a whole
pool, committed with its proposals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.matching.domain import (
    Match,
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
        """One micro-batch: optimal assignment over the authority's whole pool."""
        started = self.clock()
        today = started.date()
        pool = self.uow()
        volunteers = [
            v
            for v in await pool.volunteers.in_authority(authority)
            if v.dbs_valid(today) and v.free_capacity > 0
        ]
        participants = await pool.participants.waiting(authority)
        weights = self.weights.for_authority(authority)
        volunteer_views = [v.view() for v in volunteers]
        participant_views = [p.view() for p in participants]
        t0 = time.perf_counter()
        proposals = await asyncio.to_thread(
            optimal_assignment,
            volunteer_views,
            participant_views,
            weights,
            today=today,
            now=started,
        )
        duration = time.perf_counter() - t0
        self.metrics.optimiser_duration.labels(authority.value).observe(duration)
        run_id = new_id("run")
        by_volunteer = {v.volunteer_id: v for v in volunteer_views}
        by_participant = {p.participant: p for p in participants}
        matches = tuple(
            propose(
                pr,
                by_volunteer[pr.volunteer_id],
                by_participant[pr.participant],
                match_id=new_id("match"),
                run_id=run_id,
                now=started,
            )
            for pr in proposals
        )
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
        events = [
            Outgoing(MATCHING_MATCHES, m.local_authority, match_proposed(m)).message(
                run.finished_at
            )
            for m in matches
        ]
        places: dict[str, int] = {}
        for m in matches:
            places[m.volunteer_id] = places.get(m.volunteer_id, 0) + 1

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

        try:
            await self.uow().run(commit)
        except Conflict as exc:
            self.metrics.runs.labels(authority.value, "conflict").inc()
            logger.info("optimiser run %s for %s discarded: %s", run_id, authority.value, exc)
            return RunOutcome(run_id, authority, len(participants), len(volunteers), (), False)
        self.metrics.runs.labels(authority.value, "committed").inc()
        self.metrics.run_proposals.labels(authority.value).observe(len(matches))
        self.metrics.proposals.labels(authority.value).inc(len(matches))
        logger.info(
            "optimiser run %s for %s: %d waiting, %d volunteers, %d proposals in %.3fs",
            run_id,
            authority.value,
            len(participants),
            len(volunteers),
            len(matches),
            duration,
        )
        if matches:
            self.on_commit()
        return RunOutcome(run_id, authority, len(participants), len(volunteers), matches, True)
