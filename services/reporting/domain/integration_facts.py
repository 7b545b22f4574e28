"""Per-record facts behind the integration reports (issue 16), with no I/O and no
import from the projection (which uses them): the aggregates' keys and counters, when a
befriending match counts as still active, and when an ESOL learner progressed.

**Lasting bridges.** A confirmed match is *still active at a mark* (6 weeks = 42 days,
6 months = 182 days after the day it was confirmed) when it had not ended before the
mark day and a meeting (``MatchCheckInRecorded.met_on``) was recorded within the
:data:`ACTIVITY_WINDOW_DAYS` days up to and including the mark day: a pair that stopped
meeting has lapsed even if nobody ended the match. The window is the matching service's
default lapse threshold, fixed here so that published figures never depend on a
deployment setting (and a rebuild always gives the same numbers). Each check-in event
carries the match's start (``match_started_at``), so the fact is decided by the event
alone, whatever order events arrive in.

**ESOL progression time.** The first day on which an ESOL enrolment was recorded at a
level above its starting level (an assessment, a completion or a later outcome), counted
from its start date.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

SIX_WEEKS_DAYS = 42
SIX_MONTHS_DAYS = 182
ACTIVITY_WINDOW_DAYS = 28
BRIDGE_MARKS: Mapping[str, int] = {"6w": SIX_WEEKS_DAYS, "6m": SIX_MONTHS_DAYS}

BRIDGE_DIMS: tuple[str, ...] = ("combined_authority", "local_authority", "month")
BRIDGE_BASE_FIELDS: tuple[str, ...] = (
    "confirmed",
    "cross_confirmed",
    "cross_active_6w",
    "cross_active_6m",
)
"""By month of confirmation: matches confirmed, of which cross-background, of which still
active at 6 weeks and at 6 months."""

WAITING_GROUP_DIMS: tuple[str, ...] = (
    "combined_authority",
    "local_authority",
    "month",
    "age_band",
    "sex",
    "ethnic_group",
)
WAITING_GROUP_BASE_FIELDS: tuple[str, ...] = ("opted_in", "waiting", "matched")
"""By month of opting in and the participant's group: opted in, still waiting for a first
match, matched."""


def met_in_window(started_on: date, met_on: date, mark_days: int) -> bool:
    """A meeting on ``met_on`` shows the match active at the mark ``mark_days`` after
    ``started_on`` (it is in the window of :data:`ACTIVITY_WINDOW_DAYS` days up to it)."""
    day = (met_on - started_on).days
    return mark_days - ACTIVITY_WINDOW_DAYS <= day <= mark_days


def ended_before_mark(confirmed_on: str, ended_on: str | None, mark_days: int) -> bool:
    if ended_on is None:
        return False
    return (date.fromisoformat(ended_on) - date.fromisoformat(confirmed_on)).days < mark_days


def earlier(current: str | None, candidate: date) -> str:
    """The earlier of an ISO day (or none) and ``candidate``, as an ISO day."""
    iso = candidate.isoformat()
    return iso if current is None or iso < current else current
