"""Hard constraints: what a pair must satisfy to be proposed (never traded off)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from services.matching.domain.profiles import ParticipantView, VolunteerView


class Violation(StrEnum):
    DIFFERENT_COMBINED_AUTHORITY = "different_combined_authority"
    DBS_EXPIRED = "dbs_expired"
    NO_CAPACITY = "no_capacity"
    NO_SHARED_AVAILABILITY = "no_shared_availability"
    PARTICIPANT_GENDER_PREFERENCE = "participant_gender_preference"
    VOLUNTEER_GENDER_PREFERENCE = "volunteer_gender_preference"
    DECLINED_BEFORE = "declined_before"
    MATCHED_BEFORE = "matched_before"


def violations(v: VolunteerView, p: ParticipantView, today: date) -> tuple[Violation, ...]:
    """Every hard constraint the pair breaks (empty = feasible)."""
    out: list[Violation] = []
    if v.combined_authority != p.combined_authority:
        out.append(Violation.DIFFERENT_COMBINED_AUTHORITY)
    if v.dbs_expires_on < today:
        out.append(Violation.DBS_EXPIRED)
    if v.free_capacity <= 0:
        out.append(Violation.NO_CAPACITY)
    if v.availability.isdisjoint(p.availability):
        out.append(Violation.NO_SHARED_AVAILABILITY)
    if p.gender_preference is not None and v.gender != p.gender_preference:
        out.append(Violation.PARTICIPANT_GENDER_PREFERENCE)
    if v.gender_preference is not None and p.sex != v.gender_preference:
        out.append(Violation.VOLUNTEER_GENDER_PREFERENCE)
    if v.volunteer_id in p.declined_volunteers:
        out.append(Violation.DECLINED_BEFORE)
    if v.volunteer_id in p.previous_volunteers:
        out.append(Violation.MATCHED_BEFORE)
    return tuple(out)


def feasible(v: VolunteerView, p: ParticipantView, today: date) -> bool:
    """Same as ``not violations(...)``, short-circuiting (the optimiser's hot path)."""
    return (
        v.combined_authority == p.combined_authority
        and v.dbs_expires_on >= today
        and v.free_capacity > 0
        and not v.availability.isdisjoint(p.availability)
        and (p.gender_preference is None or v.gender == p.gender_preference)
        and (v.gender_preference is None or p.sex == v.gender_preference)
        and v.volunteer_id not in p.declined_volunteers
        and v.volunteer_id not in p.previous_volunteers
    )
