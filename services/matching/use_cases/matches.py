"""Coordinators' matches: reading them within scope, deciding proposals and ending matches."""

from __future__ import annotations

from collections.abc import Sequence

from services.matching.domain import (
    DomainError,
    Match,
    MatchStatus,
    accept,
    decline,
    end,
    match_confirmed,
    match_declined,
    match_ended,
)
from services.matching.repository import MatchQuery, Outgoing
from services.matching.use_cases.base import NotFound, UseCases, require_scope
from shared.auth import Principal
from shared.contracts.matching import MatchConfirmed, MatchDeclined
from shared.contracts.reference import CombinedAuthority, combined_authority_of
from shared.topics import MATCHING_MATCHES


class MatchUseCases(UseCases):
    """Coordinators' decisions on proposals and matches."""

    async def get_match(self, principal: Principal, match_id: str) -> Match:
        match = await self.repo.get_match(match_id)
        if match is None or match.combined_authority not in principal.combined_authorities:
            raise NotFound(f"no match {match_id} in your combined authorities")
        return match

    async def list_matches(
        self,
        principal: Principal,
        *,
        local_authority: str | None,
        status: MatchStatus | None,
        limit: int,
        offset: int,
    ) -> list[Match]:
        authorities: Sequence[CombinedAuthority] = principal.combined_authorities
        if local_authority is not None:
            authority = combined_authority_of(local_authority)
            if authority is None:
                raise DomainError(f"unknown local authority {local_authority!r}")
            require_scope(principal, authority)
            authorities = (authority,)
        return await self.repo.list_matches(
            MatchQuery(
                authorities=authorities,
                local_authority=local_authority,
                status=status,
                limit=limit,
                offset=offset,
            )
        )

    async def decide(
        self, principal: Principal, match_id: str, *, accepted: bool, reason: str | None
    ) -> Match:
        match = await self.get_match(principal, match_id)
        now = self.clock()
        event: MatchConfirmed | MatchDeclined
        if accepted:
            volunteer = await self.repo.get_volunteer(match.volunteer_id)
            transition = accept(
                match, volunteer, today=now.date(), now=now, by=principal.principal_id
            )
            event = match_confirmed(transition.match)
        else:
            if not reason:
                raise DomainError("a decline needs a reason")
            transition = decline(match, reason, now=now, by=principal.principal_id)
            event = match_declined(transition.match)
        await self.repo.apply_transition(
            transition, [Outgoing(MATCHING_MATCHES, match.local_authority, event)]
        )
        self.metrics.decisions.labels("accepted" if accepted else "declined").inc()
        self.on_commit()
        return transition.match

    async def end_match(
        self,
        principal: Principal,
        match_id: str,
        *,
        reason: str,
        meetings_count: int,
        rematch: bool,
    ) -> Match:
        match = await self.get_match(principal, match_id)
        transition = end(match, reason, meetings_count, now=self.clock(), rematch=rematch)
        await self.repo.apply_transition(
            transition,
            [Outgoing(MATCHING_MATCHES, match.local_authority, match_ended(transition.match))],
        )
        self.metrics.decisions.labels("ended").inc()
        self.on_commit()
        return transition.match
