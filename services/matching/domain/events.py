"""The events matching publishes, built from domain state. No background value is
ever part of one: explanations and events name dimensions only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.matching.domain.lifecycle import Match
from services.matching.domain.volunteers import Volunteer
from shared.contracts.matching import (
    MatchConfirmed,
    MatchDeclined,
    MatchEnded,
    MatchProposed,
    VolunteerDbsExpired,
    VolunteerRegistered,
    VolunteerUpdated,
)


def _match_ref(match: Match) -> dict[str, Any]:
    return {
        "match_id": match.match_id,
        "volunteer_id": match.volunteer_id,
        "participant": match.participant,
        "enrolment_id": match.enrolment_id,
        "combined_authority": match.combined_authority,
        "local_authority": match.local_authority,
    }


def match_proposed(match: Match) -> MatchProposed:
    """Every field of the proposal, by name (the contract ignores the decision fields)."""
    return MatchProposed.model_validate(match, from_attributes=True)


def match_confirmed(match: Match) -> MatchConfirmed:
    assert match.decided_at is not None
    return MatchConfirmed(
        **_match_ref(match),
        cross_background=match.cross_background,
        waited_since=match.waited_since,
        confirmed_at=match.decided_at,
    )


def match_declined(match: Match) -> MatchDeclined:
    assert match.decided_at is not None and match.decline_reason is not None
    return MatchDeclined(
        **_match_ref(match), reason=match.decline_reason, declined_at=match.decided_at
    )


def match_ended(match: Match) -> MatchEnded:
    assert match.ended_at is not None and match.end_reason is not None
    return MatchEnded(
        **_match_ref(match),
        reason=match.end_reason,
        meetings_count=match.meetings_count or 0,
        ended_at=match.ended_at,
    )


def volunteer_event(v: Volunteer, *, created: bool) -> VolunteerRegistered | VolunteerUpdated:
    """The public record of a volunteer: no background fields, ever."""
    common: dict[str, Any] = {
        "volunteer_id": v.volunteer_id,
        "combined_authority": v.combined_authority,
        "local_authority": v.local_authority,
        "capacity": v.capacity,
        "dbs_expires_on": v.dbs_expires_on,
        "languages": v.languages,
        "availability": v.availability,
        "interests": v.interests,
    }
    if created:
        return VolunteerRegistered(**common, registered_at=v.registered_at)
    return VolunteerUpdated(**common, updated_at=v.updated_at)


def volunteer_dbs_expired(v: Volunteer, match_ids: Sequence[str]) -> VolunteerDbsExpired:
    return VolunteerDbsExpired(
        volunteer_id=v.volunteer_id,
        combined_authority=v.combined_authority,
        local_authority=v.local_authority,
        dbs_expired_on=v.dbs_expires_on,
        paused_match_ids=tuple(sorted(match_ids)),
    )
