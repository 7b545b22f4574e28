"""Coordinators' matches: reading them within scope, deciding proposals and ending matches."""

from __future__ import annotations

from collections.abc import Sequence

from services.matching.domain import (
    DomainError,
    Match,
    MatchStatus,
    MatchTransition,
    accept,
    decline,
    end,
    match_confirmed,
    match_declined,
    match_ended,
)
from services.matching.repository import MatchQuery, Outgoing, UnitOfWork
from services.matching.use_cases.base import NotFound, UseCases, require_scope
from shared.auth import Principal
from shared.contracts.matching import MatchConfirmed, MatchDeclined
from shared.contracts.reference import CombinedAuthority, combined_authority_of
from shared.topics import MATCHING_MATCHES


class MatchUseCases(UseCases):
    """Coordinators' decisions on proposals and matches."""

    async def get_match(self, principal: Principal, match_id: str) -> Match:
        return in_scope(principal, match_id, await self.uow().matches.get(match_id))

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
        return await self.uow().matches.find(
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
        async def work(uow: UnitOfWork) -> MatchTransition:
            match = in_scope(principal, match_id, await uow.matches.get(match_id))
            now = self.clock()
            event: MatchConfirmed | MatchDeclined
            if accepted:
                volunteer = await uow.volunteers.get(match.volunteer_id)
                transition = accept(
                    match, volunteer, today=now.date(), now=now, by=principal.principal_id
                )
                event = match_confirmed(transition.match)
            else:
                if not reason:
                    raise DomainError("a decline needs a reason")
                transition = decline(match, reason, now=now, by=principal.principal_id)
                event = match_declined(transition.match)
            await save_transition(uow, transition)
            uow.publish([Outgoing(MATCHING_MATCHES, match.local_authority, event).message(now)])
            return transition

        transition = await self.uow().run(work)
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
        async def work(uow: UnitOfWork) -> MatchTransition:
            match = in_scope(principal, match_id, await uow.matches.get(match_id))
            now = self.clock()
            transition = end(match, reason, meetings_count, now=now, rematch=rematch)
            await save_transition(uow, transition)
            ended = match_ended(transition.match)
            uow.publish([Outgoing(MATCHING_MATCHES, match.local_authority, ended).message(now)])
            return transition

        transition = await self.uow().run(work)
        self.metrics.decisions.labels("ended").inc()
        self.on_commit()
        return transition.match


def in_scope(principal: Principal, match_id: str, match: Match | None) -> Match:
    """The match, if it is in the caller's combined authorities (else "not found")."""
    if match is None or match.combined_authority not in principal.combined_authorities:
        raise NotFound(f"no match {match_id} in your combined authorities")
    return match


async def save_transition(uow: UnitOfWork, transition: MatchTransition) -> None:
    """Save a match transition: the match and its participant, each only if still in the
    state the transition starts from (``Conflict`` otherwise), and the volunteer's place."""
    m = transition.match
    await uow.matches.save(m, expected_status=transition.expected_status)
    await uow.participants.save_transition(transition)
    if transition.volunteer_active_delta:
        await uow.volunteers.add_active(m.volunteer_id, transition.volunteer_active_delta)
