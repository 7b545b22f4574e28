"""Seeded random matching pools, for the optimiser benchmark and the unit tests.

A pool resembles one combined authority's waiting list: people spread over its
boroughs, a few availability slots each, mixed backgrounds (some without consent to
be matched on them), some gender preferences, a few lapsed DBS checks and declined
pairs, and fewer volunteer places than participants so that choices matter.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from services.matching.domain import BridgingProfile, ParticipantView, VolunteerView
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Religion,
    Sex,
)

SLOTS = tuple(f"{d}-{p}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") for p in ("am", "pm", "eve"))
INTERESTS = (
    "cooking", "football", "gardening", "music", "walking", "reading",
    "films", "crafts", "cricket", "chess", "history", "photography",
)  # fmt: skip
LANGUAGES = ("en", "ar", "ur", "pl", "ro", "pa", "bn", "so", "uk", "fa", "ti", "zh")
COUNTRIES = ("GB", "PK", "IN", "BD", "PL", "RO", "SY", "UA", "SO", "ER", "IR", "CN", "NG", "IE")


def _profile(rng: random.Random, consent_rate: float) -> BridgingProfile | None:
    if rng.random() >= consent_rate:
        return None
    ethnicity = rng.choice(list(Ethnicity))
    return BridgingProfile(
        ethnicity_group=ethnicity.group,
        religion=rng.choice(list(Religion)),
        country_of_birth=rng.choice(COUNTRIES),
        age_band=rng.choice(list(AgeBand)),
    )


def random_pool(
    seed: int,
    volunteers: int,
    participants: int,
    *,
    authority: CombinedAuthority = CombinedAuthority.GREATER_MANCHESTER,
    now: datetime,
    consent_rate: float = 0.7,
    max_capacity: int = 3,
    max_slots: int = 4,
) -> tuple[list[VolunteerView], list[ParticipantView]]:
    rng = random.Random(seed)
    boroughs = sorted(LOCAL_AUTHORITIES[authority])
    today: date = now.date()
    vols = [
        VolunteerView(
            volunteer_id=f"v{seed}-{i:05d}",
            combined_authority=authority,
            local_authority=rng.choice(boroughs),
            availability=frozenset(rng.sample(SLOTS, rng.randint(1, max_slots))),
            interests=frozenset(rng.sample(INTERESTS, rng.randint(0, 4))),
            languages=frozenset(["en", *rng.sample(LANGUAGES, rng.randint(0, 2))]),
            gender=rng.choice([Sex.FEMALE, Sex.MALE]),
            gender_preference=rng.choice([Sex.FEMALE, Sex.MALE]) if rng.random() < 0.15 else None,
            dbs_expires_on=today + timedelta(days=rng.randint(-30, 700)),
            free_capacity=rng.randint(1, max_capacity),
            bridging=_profile(rng, consent_rate),
        )
        for i in range(volunteers)
    ]
    parts = []
    for i in range(participants):
        declined = frozenset(
            rng.choice(vols).volunteer_id for _ in range(rng.randint(0, 2)) if vols
        )
        parts.append(
            ParticipantView(
                participant=f"p{seed}-{i:05d}",
                combined_authority=authority,
                local_authority=rng.choice(boroughs),
                availability=frozenset(rng.sample(SLOTS, rng.randint(1, max_slots))),
                interests=frozenset(rng.sample(INTERESTS, rng.randint(0, 4))),
                languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 2))),
                sex=rng.choice([Sex.FEMALE, Sex.MALE, None]),
                gender_preference=rng.choice([Sex.FEMALE, Sex.MALE])
                if rng.random() < 0.25
                else None,
                declined_volunteers=declined,
                previous_volunteers=frozenset(),
                waiting_since=now - timedelta(hours=rng.uniform(0, 24 * 60)),
                bridging=_profile(rng, consent_rate),
            )
        )
    return vols, parts
