"""The pool as coordinators see it: who waits, and why (the hard constraint in the way)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.matching.domain import DomainError, Participant
from services.matching.domain.waiting import WaitingDiagnosis, WaitingReason, diagnose_pool
from services.matching.use_cases.base import UseCases, require_scope
from shared.auth import Principal
from shared.contracts.reference import CombinedAuthority, combined_authority_of


@dataclass(frozen=True)
class PoolView:
    combined_authority: CombinedAuthority
    waiting: tuple[Participant, ...]
    volunteers_available: int
    reasons: Mapping[str, WaitingReason] = field(default_factory=dict)
    """Why each waiting participant (by pseudonym) is still waiting."""


@dataclass(frozen=True)
class WaitingView:
    combined_authority: CombinedAuthority
    diagnoses: tuple[WaitingDiagnosis, ...]
    volunteers: int
    """Volunteers registered in the combined authority (whatever their state)."""


class PoolUseCases(UseCases):
    """Waiting lists."""

    async def waiting(
        self,
        principal: Principal,
        authority: CombinedAuthority | None,
        local_authority: str | None = None,
    ) -> list[WaitingView]:
        """Every waiting participant in scope with the hard constraint that keeps them
        waiting (``services.matching.domain.waiting``)."""
        if local_authority is not None:
            owner = combined_authority_of(local_authority)
            if owner is None:
                raise DomainError(f"unknown local authority {local_authority!r}")
            if authority is not None and owner != authority:
                raise DomainError(
                    f"local authority {local_authority} is not in combined authority "
                    f"{authority.value}"
                )
            authority = owner
        if authority is not None:
            require_scope(principal, authority)
        authorities = (authority,) if authority else principal.combined_authorities
        today = self.clock().date()
        uow = self.uow()
        out = []
        for ca in sorted(authorities):
            volunteers = [v.view() for v in await uow.volunteers.in_authority(ca)]
            waiting = [
                p.view()
                for p in await uow.participants.waiting(ca)
                if local_authority is None or p.local_authority == local_authority
            ]
            # CPU work over the whole pool: off the event loop, like the optimiser.
            diagnoses = await asyncio.to_thread(diagnose_pool, waiting, volunteers, today)
            out.append(WaitingView(ca, tuple(diagnoses), len(volunteers)))
        return out

    async def pool(
        self, principal: Principal, authority: CombinedAuthority | None
    ) -> list[PoolView]:
        if authority is not None:
            require_scope(principal, authority)
        authorities = (authority,) if authority else principal.combined_authorities
        today = self.clock().date()
        uow = self.uow()
        out = []
        for ca in sorted(authorities):
            waiting = await uow.participants.waiting(ca)
            stats = await uow.runs.pool_stats(ca, since=None, today=today)
            volunteers = [v.view() for v in await uow.volunteers.in_authority(ca)]
            views = [p.view() for p in waiting]
            diagnoses = await asyncio.to_thread(diagnose_pool, views, volunteers, today)
            reasons = {d.participant: d.reason for d in diagnoses}
            out.append(PoolView(ca, tuple(waiting), stats.volunteers_available, reasons))
        return out
