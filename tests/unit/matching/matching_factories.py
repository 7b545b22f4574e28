"""Builders for the matching unit tests (pure domain objects, no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.matching.domain import (
    BackgroundFields,
    BridgingProfile,
    Match,
    MatchStatus,
    Participant,
    ParticipantView,
    Volunteer,
    VolunteerView,
)
from shared.contracts.enrolment import Background, Consent, ParticipantOptedIn
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Programme,
    Religion,
    Sex,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TODAY: date = NOW.date()
GM = CombinedAuthority.GREATER_MANCHESTER
OLDHAM = "E08000004"
WIGAN = "E08000010"
BIRMINGHAM = "E08000025"

SAME = BridgingProfile(
    ethnicity_group="white",
    religion=Religion.CHRISTIAN,
    country_of_birth="GB",
    age_band=AgeBand.AGE_25_34,
)


def volunteer_view(**overrides: Any) -> VolunteerView:
    base = VolunteerView(
        volunteer_id="v-1",
        combined_authority=GM,
        local_authority=OLDHAM,
        availability=frozenset({"mon-am", "sat-pm"}),
        interests=frozenset({"cooking"}),
        languages=frozenset({"en"}),
        gender=Sex.FEMALE,
        gender_preference=None,
        dbs_expires_on=TODAY + timedelta(days=365),
        free_capacity=1,
        bridging=SAME,
    )
    return replace(base, **overrides)


def participant_view(**overrides: Any) -> ParticipantView:
    base = ParticipantView(
        participant="p-1",
        combined_authority=GM,
        local_authority=OLDHAM,
        availability=frozenset({"mon-am"}),
        interests=frozenset({"cooking"}),
        languages=frozenset({"ar"}),
        sex=Sex.FEMALE,
        gender_preference=None,
        declined_volunteers=frozenset(),
        previous_volunteers=frozenset(),
        waiting_since=NOW - timedelta(days=1),
        bridging=SAME,
    )
    return replace(base, **overrides)


def opt_in(**overrides: Any) -> ParticipantOptedIn:
    fields: dict[str, Any] = {
        "enrolment_id": "enr-1",
        "learner": "learner-1",
        "provider_ukprn": "10000001",
        "combined_authority": GM,
        "local_authority": OLDHAM,
        "programme": Programme.ESOL,
        "consent": Consent(matching=True),
        "age_band": AgeBand.AGE_35_49,
        "sex": Sex.FEMALE,
        "languages": ("ar", "en"),
        "availability": ("mon-am", "Sat-PM"),
        "interests": ("Cooking",),
        "background": Background(
            ethnicity=Ethnicity.OTHER_ARAB, religion=Religion.MUSLIM, country_of_birth="SY"
        ),
        "opted_in_at": NOW,
    }
    fields.update(overrides)
    return ParticipantOptedIn(**fields)


def volunteer(**overrides: Any) -> Volunteer:
    fields: dict[str, Any] = {
        "volunteer_id": "v-1",
        "combined_authority": GM,
        "local_authority": OLDHAM,
        "capacity": 2,
        "dbs_expires_on": TODAY + timedelta(days=200),
        "registered_at": NOW - timedelta(days=30),
        "updated_at": NOW - timedelta(days=30),
        "availability": ("mon-am", "sat-pm"),
        "gender": Sex.FEMALE,
        "age_band": AgeBand.AGE_50_64,
        "consent_matching": True,
        "background": BackgroundFields(Ethnicity.WHITE_BRITISH, Religion.CHRISTIAN, "GB"),
        "version": 1,
    }
    fields.update(overrides)
    return Volunteer(**fields)


def participant(**overrides: Any) -> Participant:
    fields: dict[str, Any] = {
        "participant": "learner-1",
        "enrolment_id": "enr-1",
        "combined_authority": GM,
        "local_authority": OLDHAM,
        "age_band": AgeBand.AGE_35_49,
        "waiting_since": NOW - timedelta(days=3),
        "pool_entered_at": NOW - timedelta(days=3),
        "opted_in_at": NOW - timedelta(days=3),
        "availability": ("mon-am",),
        "consent_matching": True,
        "background": BackgroundFields(Ethnicity.OTHER_ARAB, Religion.MUSLIM, "SY"),
    }
    fields.update(overrides)
    return Participant(**fields)


def match(status: MatchStatus = MatchStatus.PROPOSED, **overrides: Any) -> Match:
    """A match between ``volunteer()`` and ``participant()``-like ids, proposed a day ago."""
    base = Match(
        match_id="m-1",
        volunteer_id="v-1",
        participant="learner-1",
        enrolment_id="enr-1",
        combined_authority=GM,
        local_authority=OLDHAM,
        status=status,
        score=1.0,
        score_components={},
        bridging_dimensions=(),
        shared_slots=(),
        shared_interests=(),
        explanation="",
        waited_since=NOW - timedelta(days=3),
        proposed_at=NOW - timedelta(days=1),
        decided_at=NOW - timedelta(days=1) if status is MatchStatus.CONFIRMED else None,
    )
    return replace(base, **overrides)
