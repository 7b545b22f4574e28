"""Events published by the matching service.

``matching.volunteers.v1`` (key: volunteer id) carries no background fields of
volunteers: those stay in the matching service's own database.
``matching.matches.v1`` (key: local authority): proposals, decisions, endings and the
meetings (check-ins) of confirmed pairs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.cloudevents import Event
from shared.contracts.reference import CombinedAuthority


class VolunteerRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    volunteer_id: str
    combined_authority: CombinedAuthority
    local_authority: str


class VolunteerRegistered(Event, VolunteerRef):
    event_name = "VolunteerRegistered"

    capacity: int
    dbs_expires_on: date
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    registered_at: datetime


class VolunteerUpdated(Event, VolunteerRef):
    event_name = "VolunteerUpdated"

    capacity: int
    dbs_expires_on: date
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    updated_at: datetime


class VolunteerDbsExpired(Event, VolunteerRef):
    """The volunteer's DBS check lapsed: no new proposals; confirmed matches flagged."""

    event_name = "VolunteerDbsExpired"

    dbs_expired_on: date
    paused_match_ids: tuple[str, ...] = ()


class MatchRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    match_id: str
    volunteer_id: str
    participant: str = Field(description="Learner pseudonym of the participant.")
    enrolment_id: str | None = None
    combined_authority: CombinedAuthority
    local_authority: str


class MatchProposed(Event, MatchRef):
    event_name = "MatchProposed"

    score: float
    score_components: dict[str, float] = Field(
        default_factory=dict,
        description="How the score was made up (weight earned per component), for explanation.",
    )
    bridging_dimensions: tuple[str, ...] = Field(
        default=(),
        description="Background dimensions on which the pair differ (only from consented data).",
    )
    shared_slots: tuple[str, ...] = ()
    shared_interests: tuple[str, ...] = ()
    explanation: str
    waited_since: datetime
    proposed_at: datetime
    run_id: str | None = None


class MatchConfirmed(Event, MatchRef):
    event_name = "MatchConfirmed"

    cross_background: bool
    waited_since: datetime
    confirmed_at: datetime


class MatchDeclined(Event, MatchRef):
    event_name = "MatchDeclined"

    reason: str
    declined_at: datetime


class MatchEnded(Event, MatchRef):
    event_name = "MatchEnded"

    reason: str
    meetings_count: int = 0
    ended_at: datetime


class MatchCheckInRecorded(Event, MatchRef):
    """A meeting of a confirmed pair took place (a check-in recorded by their coordinator
    or by the volunteer). One per match and day: ``check_in_id`` is derived from both, so
    recording the same day again changes nothing. Carries no free text: what the pair did
    is not the platform's business."""

    event_name = "MatchCheckInRecorded"

    check_in_id: str = Field(description="Stable id of this meeting (match and day).")
    met_on: date = Field(description="The day the pair met (never before the match began).")
    match_started_at: datetime = Field(
        description="When the match was confirmed (its MatchConfirmed.confirmed_at), so that "
        "the event says on its own how far into the match the meeting was."
    )
    recorded_by: Literal["coordinator", "volunteer"] = Field(
        description="Who recorded it: the pair's coordinator or the volunteer themself."
    )
    recorded_at: datetime


VOLUNTEER_EVENTS: tuple[type[Event], ...] = (
    VolunteerRegistered,
    VolunteerUpdated,
    VolunteerDbsExpired,
)
MATCH_EVENTS: tuple[type[Event], ...] = (
    MatchProposed,
    MatchConfirmed,
    MatchDeclined,
    MatchEnded,
    MatchCheckInRecorded,
)
