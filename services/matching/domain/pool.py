"""Participants in the pool: entering it from an opt-in (background fields are not
even read without consent) and merging a repeated opt-in."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from services.matching.domain.errors import InvalidParticipant
from services.matching.domain.profiles import (
    BackgroundFields,
    ParticipantView,
    bridging_profile,
    normalised,
)
from shared.contracts.enrolment import Background, ParticipantOptedIn
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Sex,
    combined_authority_of,
)


class ParticipantStatus(StrEnum):
    WAITING = "waiting"
    PROPOSED = "proposed"
    MATCHED = "matched"
    ENDED = "ended"


@dataclass(frozen=True)
class Participant:
    participant: str
    enrolment_id: str | None
    combined_authority: CombinedAuthority
    local_authority: str
    age_band: AgeBand | None
    waiting_since: datetime
    """Priority anchor: kept across declines so waiting time keeps counting."""
    pool_entered_at: datetime
    """When the participant last (re)entered the pool: drives the batch threshold."""
    opted_in_at: datetime
    status: ParticipantStatus = ParticipantStatus.WAITING
    sex: Sex | None = None
    gender_preference: Sex | None = None
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    consent_matching: bool = False
    background: BackgroundFields | None = None
    declined_volunteers: tuple[str, ...] = ()
    previous_volunteers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.consent_matching and self.background is not None:
            object.__setattr__(self, "background", None)

    def view(self) -> ParticipantView:
        return ParticipantView(
            participant=self.participant,
            combined_authority=self.combined_authority,
            local_authority=self.local_authority,
            availability=frozenset(self.availability),
            interests=frozenset(self.interests),
            languages=frozenset(self.languages),
            sex=self.sex,
            gender_preference=self.gender_preference,
            declined_volunteers=frozenset(self.declined_volunteers),
            previous_volunteers=frozenset(self.previous_volunteers),
            waiting_since=self.waiting_since,
            bridging=bridging_profile(self.background, self.age_band)
            if self.consent_matching
            else None,
        )


def background_fields(background: Background) -> BackgroundFields:
    """Background as enrolment sent it, as matching keeps it (only ever with consent)."""
    return BackgroundFields(
        ethnicity=background.ethnicity,
        religion=background.religion,
        country_of_birth=background.country_of_birth,
    )


def participant_from_opt_in(event: ParticipantOptedIn, now: datetime) -> Participant:
    """The pool entry for an opt-in. Background fields are not even read without consent."""
    if combined_authority_of(event.local_authority) != event.combined_authority:
        raise InvalidParticipant(
            f"local authority {event.local_authority!r} is not in combined authority "
            f"{event.combined_authority.value}"
        )
    consent = event.consent.matching
    background: BackgroundFields | None = None
    if consent and event.background is not None:
        background = background_fields(event.background)
    return Participant(
        participant=event.learner,
        enrolment_id=event.enrolment_id,
        combined_authority=event.combined_authority,
        local_authority=event.local_authority,
        age_band=event.age_band,
        # Waiting counts from the opt-in itself (not from when we consumed it), but
        # never from the future.
        waiting_since=min(event.opted_in_at, now),
        pool_entered_at=now,
        opted_in_at=event.opted_in_at,
        sex=event.sex,
        gender_preference=event.gender_preference,
        languages=normalised(event.languages),
        availability=normalised(event.availability),
        interests=normalised(event.interests),
        consent_matching=consent,
        background=background,
    )


def merge_opt_in(existing: Participant | None, incoming: Participant) -> Participant:
    """A new opt-in from someone already known updates their preferences; their place in
    the queue, status and match history are kept (an ended participant re-enters)."""
    if existing is None:
        return incoming
    rejoining = existing.status is ParticipantStatus.ENDED
    return replace(
        incoming,
        status=ParticipantStatus.WAITING if rejoining else existing.status,
        waiting_since=incoming.waiting_since if rejoining else existing.waiting_since,
        pool_entered_at=incoming.pool_entered_at if rejoining else existing.pool_entered_at,
        declined_volunteers=existing.declined_volunteers,
        previous_volunteers=existing.previous_volunteers,
    )
