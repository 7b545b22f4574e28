"""What the scorer and the hard constraints may read about each side of a pair.

Consent is structural: a :class:`BridgingProfile` (the background the scorer compares)
is only built for someone who consented to be matched on background, and
:class:`VolunteerView` / :class:`ParticipantView` are the only inputs of the scorer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Religion,
    Sex,
)

SLOT_PATTERN = r"^(mon|tue|wed|thu|fri|sat|sun)-(am|pm|eve)$"
"""Availability slots are weekday-period: ``mon-am``, ``sat-pm``, ``thu-eve``."""


class BridgingDimension(StrEnum):
    ETHNICITY_GROUP = "ethnicity_group"
    RELIGION = "religion"
    COUNTRY_OF_BIRTH = "country_of_birth"
    AGE_BAND = "age_band"

    @property
    def label(self) -> str:
        return _DIMENSION_LABELS[self]


_DIMENSION_LABELS = {
    BridgingDimension.ETHNICITY_GROUP: "ethnic group",
    BridgingDimension.RELIGION: "religion or belief",
    BridgingDimension.COUNTRY_OF_BIRTH: "country of birth",
    BridgingDimension.AGE_BAND: "age band",
}


@dataclass(frozen=True, slots=True)
class BridgingProfile:
    """What the scorer may compare across a pair. Exists only with consent."""

    ethnicity_group: str | None
    religion: Religion | None
    country_of_birth: str | None
    age_band: AgeBand | None


@dataclass(frozen=True, slots=True)
class BackgroundFields:
    """Background (special category) fields as stored: only ever with consent."""

    ethnicity: Ethnicity | None = None
    religion: Religion | None = None
    country_of_birth: str | None = None


def bridging_profile(
    background: BackgroundFields | None, age_band: AgeBand | None
) -> BridgingProfile:
    bg = background or BackgroundFields()
    return BridgingProfile(
        ethnicity_group=bg.ethnicity.group if bg.ethnicity else None,
        religion=bg.religion,
        country_of_birth=bg.country_of_birth.upper() if bg.country_of_birth else None,
        age_band=age_band,
    )


def bridging_dimensions(
    a: BridgingProfile | None, b: BridgingProfile | None
) -> tuple[BridgingDimension, ...]:
    """The dimensions on which two consenting people differ (both values known)."""
    if a is None or b is None:
        return ()
    out: list[BridgingDimension] = []
    if a.ethnicity_group and b.ethnicity_group and a.ethnicity_group != b.ethnicity_group:
        out.append(BridgingDimension.ETHNICITY_GROUP)
    if (
        a.religion
        and b.religion
        and Religion.NOT_STATED not in (a.religion, b.religion)
        and a.religion != b.religion
    ):
        out.append(BridgingDimension.RELIGION)
    if a.country_of_birth and b.country_of_birth and a.country_of_birth != b.country_of_birth:
        out.append(BridgingDimension.COUNTRY_OF_BIRTH)
    if a.age_band and b.age_band and a.age_band != b.age_band:
        out.append(BridgingDimension.AGE_BAND)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class VolunteerView:
    """Everything the scorer and constraints may read about a volunteer."""

    volunteer_id: str
    combined_authority: CombinedAuthority
    local_authority: str
    availability: frozenset[str]
    interests: frozenset[str]
    languages: frozenset[str]
    gender: Sex | None
    gender_preference: Sex | None
    dbs_expires_on: date
    free_capacity: int
    bridging: BridgingProfile | None


@dataclass(frozen=True, slots=True)
class ParticipantView:
    """Everything the scorer and constraints may read about a participant.

    ``bridging`` is ``None`` unless the participant consented to matching on background:
    there is no other path from background fields to the scorer."""

    participant: str
    combined_authority: CombinedAuthority
    local_authority: str
    availability: frozenset[str]
    interests: frozenset[str]
    languages: frozenset[str]
    sex: Sex | None
    gender_preference: Sex | None
    declined_volunteers: frozenset[str]
    previous_volunteers: frozenset[str]
    waiting_since: datetime
    bridging: BridgingProfile | None


def normalised(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip().lower() for v in values if v and v.strip()}))
