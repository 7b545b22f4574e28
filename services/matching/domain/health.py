"""Match health: is a confirmed pair still meeting? Pure, no I/O.

A confirmed match's health is read from the day of its last recorded meeting (a
check-in), or from the day it was confirmed while no meeting has been recorded yet:

* **on track**: contact within ``check_in_after_days`` (default 14);
* **needs check-in**: no contact for more than ``check_in_after_days`` days, but not more
  than ``lapsed_after_days`` (default 28): the coordinator should get in touch;
* **lapsed**: no contact for more than ``lapsed_after_days`` days.

Thresholds are settings (``MATCHING_HEALTH_CHECK_IN_AFTER_DAYS``,
``MATCHING_HEALTH_LAPSED_AFTER_DAYS``). Proposed, declined and ended matches have no
health: only a confirmed pair can be meeting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from services.matching.domain import Match, MatchStatus


class MatchHealth(StrEnum):
    ON_TRACK = "on_track"
    NEEDS_CHECK_IN = "needs_check_in"
    LAPSED = "lapsed"


@dataclass(frozen=True)
class HealthPolicy:
    check_in_after_days: int = 14
    lapsed_after_days: int = 28

    def __post_init__(self) -> None:
        if self.check_in_after_days < 1:
            raise ValueError("check_in_after_days must be at least 1")
        if self.lapsed_after_days <= self.check_in_after_days:
            raise ValueError("lapsed_after_days must be greater than check_in_after_days")


@dataclass(frozen=True)
class MeetingRecord:
    """What is known about a match's meetings: how many, and the latest day."""

    check_ins: int = 0
    last_met_on: date | None = None


@dataclass(frozen=True)
class HealthReport:
    state: MatchHealth
    days_since_contact: int
    """Days from the last meeting (or the confirmation, if none yet) to today."""
    last_met_on: date | None
    check_ins: int


def health_state(days_since_contact: int, policy: HealthPolicy) -> MatchHealth:
    if days_since_contact <= policy.check_in_after_days:
        return MatchHealth.ON_TRACK
    if days_since_contact <= policy.lapsed_after_days:
        return MatchHealth.NEEDS_CHECK_IN
    return MatchHealth.LAPSED


def match_health(
    match: Match, meetings: MeetingRecord, *, today: date, policy: HealthPolicy
) -> HealthReport | None:
    """The health of a confirmed match (``None`` for any other status)."""
    if match.status is not MatchStatus.CONFIRMED or match.decided_at is None:
        return None
    started = match.decided_at.date()
    anchor = max(started, meetings.last_met_on) if meetings.last_met_on else started
    days = max(0, (today - anchor).days)
    return HealthReport(
        state=health_state(days, policy),
        days_since_contact=days,
        last_met_on=meetings.last_met_on,
        check_ins=meetings.check_ins,
    )
