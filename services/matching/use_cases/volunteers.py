"""Volunteers: registered and updated by coordinators, paused when their DBS check lapses,
given a key for their own meetings."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from services.matching.domain import (
    FLAG_DBS_EXPIRED,
    DomainError,
    Volunteer,
    VolunteerDetails,
    needs_dbs_expiry_notice,
    register_or_update_volunteer,
    volunteer_dbs_expired,
    volunteer_event,
)
from services.matching.domain.checkins import volunteer_principal_id
from services.matching.repository import Outgoing, UnitOfWork
from services.matching.use_cases.base import (
    UseCases,
    VolunteerNotFound,
    new_id,
    require_scope,
)
from shared.auth import Principal, Role, new_api_key
from shared.contracts.reference import CombinedAuthority, combined_authority_of
from shared.topics import MATCHING_VOLUNTEERS

logger = logging.getLogger(__name__)


class VolunteerUseCases(UseCases):
    """Coordinators' volunteers, and DBS pauses."""

    async def register_volunteer(
        self,
        principal: Principal,
        volunteer_id: str | None,
        details: VolunteerDetails,
        external_ref: str | None = None,
    ) -> tuple[Volunteer, bool]:
        """Register or update a volunteer; returns it and whether it was created.

        Ids are issued here, never chosen by the caller (a chosen id could be squatted
        and would reveal whether it is taken in another combined authority). A
        ``volunteer_id`` only names a volunteer to update: unknown, or outside the
        caller's combined authorities, it is the same ``VolunteerNotFound``. An
        ``external_ref`` (the coordinators' own reference, unique per combined
        authority) updates the volunteer registered with it there, or registers a new
        one under an issued id.
        """
        authority = combined_authority_of(details.local_authority)
        if authority is None:
            raise DomainError(f"unknown local authority {details.local_authority!r}")
        require_scope(principal, authority)

        async def work(uow: UnitOfWork) -> tuple[Volunteer, bool]:
            existing = await volunteer_named(
                uow, principal, authority, volunteer_id=volunteer_id, external_ref=external_ref
            )
            now = self.clock()
            volunteer = register_or_update_volunteer(
                existing, existing.volunteer_id if existing else new_id("vol"), details, now
            )
            if existing is None:
                if external_ref is not None:
                    volunteer = replace(volunteer, external_ref=external_ref)
                await uow.volunteers.add(volunteer)
            else:
                await save_update(uow, existing, volunteer, now)
            event = volunteer_event(volunteer, created=existing is None)
            outgoing = Outgoing(MATCHING_VOLUNTEERS, volunteer.volunteer_id, event)
            uow.publish([outgoing.message(volunteer.updated_at)])
            return volunteer, existing is None

        volunteer, created = await self.uow().run(work)
        self.on_commit()
        if needs_dbs_expiry_notice(volunteer, volunteer.updated_at.date()):
            # A lapsed date entered by hand pauses the volunteer at once.
            stored = await self.uow().volunteers.get(volunteer.volunteer_id)
            if stored is not None:
                await self._announce_dbs_expiry(stored)
        return volunteer, created

    async def check_dbs(self) -> int:
        """Announce every DBS check that lapsed and was not announced yet (idempotent)."""
        today = self.clock().date()
        announced = 0
        for volunteer in await self.uow().volunteers.needing_dbs_notice(today):
            if await self._announce_dbs_expiry(volunteer):
                announced += 1
        return announced

    async def _announce_dbs_expiry(self, volunteer: Volunteer) -> bool:
        async def work(uow: UnitOfWork) -> list[str] | None:
            # Once per lapsed date: marking it announced fails if it already was.
            if not await uow.volunteers.mark_dbs_notified(volunteer):
                return None
            match_ids = await uow.matches.active_ids_of_volunteer(volunteer.volunteer_id)
            if match_ids:
                await uow.matches.add_flag(match_ids, FLAG_DBS_EXPIRED)
            event = volunteer_dbs_expired(volunteer, match_ids)
            uow.publish(
                [Outgoing(MATCHING_VOLUNTEERS, volunteer.volunteer_id, event).message(uow.now)]
            )
            return match_ids

        match_ids = await self.uow().run(work)
        if match_ids is None:
            return False
        self.metrics.dbs_expired.inc()
        logger.info(
            "volunteer %s paused: DBS check lapsed; %d active match(es) flagged",
            volunteer.volunteer_id,
            len(match_ids),
        )
        self.on_commit()
        return True

    async def get_volunteer(self, principal: Principal, volunteer_id: str) -> Volunteer:
        """A volunteer in the caller's combined authorities; any other id (unknown, or
        elsewhere) is the same ``VolunteerNotFound``."""
        volunteer = await self.uow().volunteers.get(volunteer_id)
        if volunteer is None or volunteer.combined_authority not in principal.combined_authorities:
            raise VolunteerNotFound(f"no volunteer {volunteer_id} in your combined authorities")
        return volunteer

    async def issue_volunteer_key(self, principal: Principal, volunteer_id: str) -> str:
        """A new key for a volunteer (shown once). Their earlier keys stop working: one
        live key per volunteer. The key may only record and list meetings of their own
        matches."""
        if self.keys is None:
            raise DomainError("volunteer keys are not available on this instance")
        volunteer = await self.uow().volunteers.get(volunteer_id)
        if volunteer is None or volunteer.combined_authority not in principal.combined_authorities:
            raise VolunteerNotFound(f"no volunteer {volunteer_id} in your combined authorities")
        principal_id = volunteer_principal_id(volunteer_id)
        await self.keys.revoke_principal(principal_id)
        key = new_api_key()
        await self.keys.add_key(
            Principal(
                principal_id=principal_id,
                name=f"Volunteer {volunteer_id}",
                role=Role.VOLUNTEER,
                combined_authorities=(volunteer.combined_authority,),
            ),
            key,
        )
        logger.info("volunteer key issued for %s", volunteer_id)
        return key


async def volunteer_named(
    uow: UnitOfWork,
    principal: Principal,
    authority: CombinedAuthority,
    *,
    volunteer_id: str | None,
    external_ref: str | None,
) -> Volunteer | None:
    """The volunteer to update: ``volunteer_id``'s, else the one registered as
    ``external_ref`` in ``authority``, else none. ``VolunteerNotFound`` if
    ``volunteer_id`` names nobody, or the volunteer is outside the caller's combined
    authorities."""
    if volunteer_id is not None:
        existing = await uow.volunteers.get(volunteer_id)
        if existing is None or existing.combined_authority not in principal.combined_authorities:
            raise VolunteerNotFound(f"no volunteer {volunteer_id} in your combined authorities")
        return existing
    if external_ref is not None:
        existing = await uow.volunteers.by_ref(authority, external_ref)
        if existing is not None and (
            existing.combined_authority not in principal.combined_authorities
        ):
            raise VolunteerNotFound(
                f"the volunteer registered as {external_ref} has moved outside your "
                "combined authorities"
            )
        return existing
    return None


async def save_update(
    uow: UnitOfWork, existing: Volunteer, volunteer: Volunteer, now: datetime
) -> None:
    """Save ``existing`` updated to ``volunteer`` (at ``existing``'s version)."""
    await uow.volunteers.save(volunteer, expected_version=existing.version)
    if volunteer.dbs_valid(now.date()) and existing.dbs_expires_on != volunteer.dbs_expires_on:
        # A renewed DBS check lifts the pause on the volunteer's matches.
        await uow.matches.clear_volunteer_flag(volunteer.volunteer_id, FLAG_DBS_EXPIRED)
