"""Match health from meetings, and the rules for recording a meeting (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.matching.domain import (
    InvalidTransition,
    Match,
    MatchStatus,
    Proposal,
    Weights,
    propose,
    score,
)
from services.matching.domain.checkins import (
    MeetingAfterEnd,
    MeetingBeforeMatch,
    MeetingInFuture,
    NotYourMatch,
    check_in_id,
    check_in_recorded,
    record_check_in,
    volunteer_of,
    volunteer_principal_id,
)
from services.matching.domain.health import (
    HealthPolicy,
    MatchHealth,
    MeetingRecord,
    match_health,
)
from services.matching.settings import MatchingSettings
from shared.auth import Principal, Role
from tests.unit.matching.matching_factories import GM, NOW, TODAY, participant, volunteer

COORDINATOR = Principal(
    principal_id="coordinator-1", name="GM", role=Role.COORDINATOR, combined_authorities=(GM,)
)


def confirmed(days_ago: int = 30) -> Match:
    v = volunteer().view()
    p = participant()
    proposal = Proposal(v.volunteer_id, p.participant, score(v, p.view(), Weights()), 0.0)
    m = propose(proposal, v, p, match_id="m-1", run_id="r-1", now=NOW - timedelta(days=days_ago))
    return replace(
        m, status=MatchStatus.CONFIRMED, decided_at=NOW - timedelta(days=days_ago), decided_by="c"
    )


def volunteer_key(volunteer_id: str = "v-1") -> Principal:
    return Principal(
        principal_id=volunteer_principal_id(volunteer_id),
        name="Volunteer",
        role=Role.VOLUNTEER,
        combined_authorities=(GM,),
    )


@pytest.mark.parametrize(
    ("last_met_days_ago", "state", "days"),
    [
        (0, MatchHealth.ON_TRACK, 0),
        (14, MatchHealth.ON_TRACK, 14),
        (15, MatchHealth.NEEDS_CHECK_IN, 15),
        (28, MatchHealth.NEEDS_CHECK_IN, 28),
        (29, MatchHealth.LAPSED, 29),
    ],
)
def test_health_follows_the_last_meeting_and_the_thresholds(
    last_met_days_ago: int, state: MatchHealth, days: int
) -> None:
    met = TODAY - timedelta(days=last_met_days_ago)
    report = match_health(
        confirmed(60), MeetingRecord(3, met), today=TODAY, policy=HealthPolicy(14, 28)
    )
    assert report is not None
    assert (report.state, report.days_since_contact, report.check_ins) == (state, days, 3)


def test_without_meetings_health_counts_from_the_confirmation() -> None:
    fresh = match_health(confirmed(10), MeetingRecord(), today=TODAY, policy=HealthPolicy())
    old = match_health(confirmed(40), MeetingRecord(), today=TODAY, policy=HealthPolicy())
    assert fresh is not None and fresh.state is MatchHealth.ON_TRACK and fresh.last_met_on is None
    assert old is not None and old.state is MatchHealth.LAPSED and old.days_since_contact == 40


def test_only_confirmed_matches_have_a_health() -> None:
    for status in (MatchStatus.PROPOSED, MatchStatus.DECLINED, MatchStatus.ENDED):
        m = replace(confirmed(), status=status)
        assert match_health(m, MeetingRecord(), today=TODAY, policy=HealthPolicy()) is None


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="greater than"):
        HealthPolicy(check_in_after_days=14, lapsed_after_days=14)
    with pytest.raises(ValueError, match="MATCHING_HEALTH_LAPSED_AFTER_DAYS"):
        MatchingSettings(health_check_in_after_days=20, health_lapsed_after_days=10)
    policy = MatchingSettings(
        health_check_in_after_days=7, health_lapsed_after_days=21
    ).health_policy()
    assert (policy.check_in_after_days, policy.lapsed_after_days) == (7, 21)


def test_a_coordinator_records_a_meeting_and_the_event_says_when_the_match_began() -> None:
    m = confirmed(30)
    check_in = record_check_in(m, TODAY - timedelta(days=2), principal=COORDINATOR, now=NOW)
    assert check_in.check_in_id == check_in_id("m-1", TODAY - timedelta(days=2))
    assert check_in.recorded_by == "coordinator" and check_in.recorder == "coordinator-1"
    event = check_in_recorded(m, check_in)
    assert event.match_started_at == m.decided_at and event.met_on == check_in.met_on
    assert event.local_authority == m.local_authority and event.participant == m.participant
    assert "note" not in event.model_dump()  # no free text travels


def test_the_match_start_day_itself_and_today_are_allowed() -> None:
    m = confirmed(30)
    assert m.decided_at is not None
    record_check_in(m, m.decided_at.date(), principal=COORDINATOR, now=NOW)
    record_check_in(m, TODAY, principal=COORDINATOR, now=NOW)


def test_bad_meetings_are_refused_with_the_rule_they_break() -> None:
    m = confirmed(30)
    with pytest.raises(MeetingBeforeMatch, match="before match m-1 began"):
        record_check_in(m, TODAY - timedelta(days=31), principal=COORDINATOR, now=NOW)
    with pytest.raises(MeetingInFuture):
        record_check_in(m, TODAY + timedelta(days=1), principal=COORDINATOR, now=NOW)
    with pytest.raises(InvalidTransition):
        record_check_in(
            replace(m, status=MatchStatus.PROPOSED), TODAY, principal=COORDINATOR, now=NOW
        )
    ended = replace(m, status=MatchStatus.ENDED, ended_at=NOW - timedelta(days=5))
    record_check_in(ended, TODAY - timedelta(days=6), principal=COORDINATOR, now=NOW)
    with pytest.raises(MeetingAfterEnd):
        record_check_in(ended, TODAY - timedelta(days=4), principal=COORDINATOR, now=NOW)


def test_a_volunteer_records_only_on_their_own_match() -> None:
    m = confirmed(30)
    own = record_check_in(m, TODAY, principal=volunteer_key("v-1"), now=NOW)
    assert own.recorded_by == "volunteer"
    with pytest.raises(NotYourMatch):
        record_check_in(m, TODAY, principal=volunteer_key("v-2"), now=NOW)
    assert volunteer_of(volunteer_key("v-9")) == "v-9"
    assert volunteer_of(COORDINATOR) is None
