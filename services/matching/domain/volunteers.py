"""Volunteers: registration and updates by coordinators, capacity, DBS validity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from services.matching.domain.errors import DomainError
from services.matching.domain.profiles import (
    BackgroundFields,
    VolunteerView,
    bridging_profile,
    normalised,
)
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Sex,
    combined_authority_of,
)


@dataclass(frozen=True)
class Volunteer:
    volunteer_id: str
    combined_authority: CombinedAuthority
    local_authority: str
    capacity: int
    dbs_expires_on: date
    registered_at: datetime
    updated_at: datetime
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    gender: Sex | None = None
    gender_preference: Sex | None = None
    age_band: AgeBand | None = None
    consent_matching: bool = False
    background: BackgroundFields | None = None
    active: int = 0
    """Proposed plus confirmed matches (what counts against capacity)."""
    dbs_expiry_notified_for: date | None = None
    version: int = 0
    external_ref: str | None = None
    """The coordinators' own reference, unique within the combined authority where the
    volunteer was registered (never part of an event)."""

    def __post_init__(self) -> None:
        if not self.consent_matching and self.background is not None:
            object.__setattr__(self, "background", None)

    def dbs_valid(self, today: date) -> bool:
        return self.dbs_expires_on >= today

    @property
    def free_capacity(self) -> int:
        return max(0, self.capacity - self.active)

    def view(self) -> VolunteerView:
        return VolunteerView(
            volunteer_id=self.volunteer_id,
            combined_authority=self.combined_authority,
            local_authority=self.local_authority,
            availability=frozenset(self.availability),
            interests=frozenset(self.interests),
            languages=frozenset(self.languages),
            gender=self.gender,
            gender_preference=self.gender_preference,
            dbs_expires_on=self.dbs_expires_on,
            free_capacity=self.free_capacity,
            bridging=bridging_profile(self.background, self.age_band)
            if self.consent_matching
            else None,
        )


def needs_dbs_expiry_notice(volunteer: Volunteer, today: date) -> bool:
    """True once per lapsed DBS date: the expiry event has not been emitted for it yet."""
    return (
        not volunteer.dbs_valid(today)
        and volunteer.dbs_expiry_notified_for != volunteer.dbs_expires_on
    )


@dataclass(frozen=True)
class VolunteerDetails:
    """What a coordinator states when registering or updating a volunteer."""

    local_authority: str
    capacity: int
    dbs_expires_on: date
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    gender: Sex | None = None
    gender_preference: Sex | None = None
    age_band: AgeBand | None = None
    consent_matching: bool = False
    background: BackgroundFields | None = None


def register_or_update_volunteer(
    existing: Volunteer | None, volunteer_id: str, details: VolunteerDetails, now: datetime
) -> Volunteer:
    authority = combined_authority_of(details.local_authority)
    if authority is None:
        raise DomainError(f"unknown local authority {details.local_authority!r}")
    if existing is not None and existing.active > 0 and existing.combined_authority != authority:
        raise DomainError(
            "a volunteer with proposed or confirmed matches cannot move to another "
            "combined authority; end or decline those matches first"
        )
    return Volunteer(
        volunteer_id=volunteer_id,
        combined_authority=authority,
        local_authority=details.local_authority,
        capacity=details.capacity,
        dbs_expires_on=details.dbs_expires_on,
        registered_at=existing.registered_at if existing else now,
        updated_at=now,
        languages=normalised(details.languages),
        availability=normalised(details.availability),
        interests=normalised(details.interests),
        gender=details.gender,
        gender_preference=details.gender_preference,
        age_band=details.age_band,
        consent_matching=details.consent_matching,
        background=details.background if details.consent_matching else None,
        active=existing.active if existing else 0,
        dbs_expiry_notified_for=existing.dbs_expiry_notified_for if existing else None,
        version=existing.version + 1 if existing else 1,
        external_ref=existing.external_ref if existing else None,
    )
