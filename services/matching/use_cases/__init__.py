"""The matching service layer: each use case, in one unit of work, loads state through
its repositories, asks the domain what should happen, and saves the new state together
with the events announcing it (one transaction).

Authorisation by scope also lives here: a coordinator acts only within the combined
authorities their key is for (out of scope: a match is "not found", a listing or a
volunteer registration is "forbidden").

Grouped by concern (:mod:`.participants`, :mod:`.volunteers`, :mod:`.optimiser`,
:mod:`.matches`, :mod:`.meetings`, :mod:`.pool`, sharing :mod:`.base`);
:class:`MatchingService` is all of them, the one object the entrypoints and workers use.
"""

from dataclasses import dataclass

from services.matching.use_cases.base import (
    NotFound,
    OutOfScope,
    UseCases,
    VolunteerNotFound,
    new_id,
    utc_now,
)
from services.matching.use_cases.meetings import CheckInResult, MeetingUseCases
from services.matching.use_cases.optimiser import OptimiserUseCases, RunOutcome
from services.matching.use_cases.participants import (
    PRIVACY_EVENTS,
    EnrolmentPrivacyEvent,
    ParticipantUseCases,
)
from services.matching.use_cases.pool import PoolUseCases, PoolView, WaitingView
from services.matching.use_cases.volunteers import VolunteerUseCases


@dataclass
class MatchingService(
    ParticipantUseCases, VolunteerUseCases, OptimiserUseCases, MeetingUseCases, PoolUseCases
):
    """Every use case of matching."""


__all__ = [
    "PRIVACY_EVENTS",
    "CheckInResult",
    "EnrolmentPrivacyEvent",
    "MatchingService",
    "NotFound",
    "OutOfScope",
    "PoolView",
    "RunOutcome",
    "UseCases",
    "VolunteerNotFound",
    "WaitingView",
    "new_id",
    "utc_now",
]
