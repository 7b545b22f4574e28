"""Meetings of confirmed pairs (check-ins) and the health of matches read from them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.matching.domain import Match, MatchStatus
from services.matching.domain.checkins import (
    CheckIn,
    NotYourMatch,
    check_in_recorded,
    record_check_in,
    volunteer_of,
)
from services.matching.domain.health import HealthReport, MeetingRecord, match_health
from services.matching.repository import Outgoing, UnitOfWork
from services.matching.use_cases.base import NotFound
from services.matching.use_cases.matches import MatchUseCases, in_scope
from shared.auth import Principal, Role
from shared.topics import MATCHING_MATCHES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckInResult:
    check_in: CheckIn
    created: bool
    health: HealthReport | None


class MeetingUseCases(MatchUseCases):
    """Check-ins by coordinators or a match's own volunteer."""

    async def record_check_in(
        self, principal: Principal, match_id: str, met_on: date
    ) -> CheckInResult:
        """Record that a confirmed pair met on ``met_on`` (a coordinator of the match's
        authority, or the match's own volunteer). The same match and day again returns
        the stored check-in (``created`` false) and announces nothing."""

        async def work(uow: UnitOfWork) -> tuple[Match, CheckIn, bool]:
            # Read in the transaction, so no second status check is needed before the
            # insert: a confirmed match can only end meanwhile, and an ended one still
            # takes meetings.
            match = await self._match_for(uow, principal, match_id)
            check_in = record_check_in(match, met_on, principal=principal, now=self.clock())
            # Look before inserting: a duplicate-key error would abort the transaction.
            existing = await uow.check_ins.get(check_in.check_in_id)
            if existing is not None:
                return match, existing, False
            await uow.check_ins.add(check_in)
            event = Outgoing(
                MATCHING_MATCHES, match.local_authority, check_in_recorded(match, check_in)
            )
            uow.publish([event.message(check_in.recorded_at)])
            return match, check_in, True

        match, check_in, created = await self.uow().run(work)
        if created:
            self.metrics.check_ins.labels(check_in.recorded_by).inc()
            self.on_commit()
            logger.info("meeting recorded on match %s by a %s", match_id, check_in.recorded_by)
        health = (await self.health([match]))[match_id]
        return CheckInResult(check_in, created, health)

    async def check_ins(self, principal: Principal, match_id: str) -> list[CheckIn]:
        uow = self.uow()
        await self._match_for(uow, principal, match_id)
        return await uow.check_ins.of_match(match_id)

    async def _match_for(self, uow: UnitOfWork, principal: Principal, match_id: str) -> Match:
        """The match, if the caller may act on it: a coordinator within their combined
        authorities (404 otherwise, as for every match), a volunteer on their own."""
        match = await uow.matches.get(match_id)
        if principal.role is Role.VOLUNTEER:
            if match is None:
                raise NotFound(f"no match {match_id}")
            if match.volunteer_id != volunteer_of(principal):
                raise NotYourMatch(f"match {match_id} is not one of your matches")
            return match
        return in_scope(principal, match_id, match)

    async def health(self, matches: Sequence[Match]) -> dict[str, HealthReport | None]:
        """The health of each match (``None`` unless confirmed)."""
        confirmed = [m.match_id for m in matches if m.status is MatchStatus.CONFIRMED]
        records = await self.uow().check_ins.meetings(confirmed)
        today = self.clock().date()
        return {
            m.match_id: match_health(
                m,
                records.get(m.match_id, MeetingRecord()),
                today=today,
                policy=self.health_policy,
            )
            for m in matches
        }
