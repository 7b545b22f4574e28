"""Pool entry, volunteer records, batch policy, match transitions and the events they
publish (pure domain; the Mongo-backed flows are in tests/integration/matching)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from matching_factories import (
    BIRMINGHAM,
    GM,
    NOW,
    OLDHAM,
    TODAY,
    WIGAN,
    opt_in,
    participant,
    volunteer,
)

from services.matching.domain import (
    SYSTEM,
    BackgroundFields,
    BatchPolicy,
    DomainError,
    InvalidParticipant,
    InvalidTransition,
    Match,
    MatchStatus,
    ParticipantStatus,
    Proposal,
    VolunteerDetails,
    VolunteerIneligible,
    Weights,
    accept,
    decline,
    end,
    match_confirmed,
    match_declined,
    match_ended,
    match_proposed,
    merge_opt_in,
    needs_dbs_expiry_notice,
    participant_from_opt_in,
    propose,
    register_or_update_volunteer,
    score,
    volunteer_dbs_expired,
    volunteer_event,
    withdraw,
)
from shared.contracts.matching import VolunteerRegistered, VolunteerUpdated
from shared.contracts.reference import Ethnicity, Religion

# ------------------------------------------------------------------ participants


def test_opt_in_enters_the_pool_with_normalised_preferences() -> None:
    p = participant_from_opt_in(opt_in(), NOW)
    assert p.status is ParticipantStatus.WAITING
    assert p.waiting_since == p.pool_entered_at == NOW
    earlier = participant_from_opt_in(opt_in(opted_in_at=NOW - timedelta(hours=5)), NOW)
    assert earlier.waiting_since == NOW - timedelta(hours=5) and earlier.pool_entered_at == NOW
    future = participant_from_opt_in(opt_in(opted_in_at=NOW + timedelta(hours=5)), NOW)
    assert future.waiting_since == NOW
    assert p.availability == ("mon-am", "sat-pm")
    assert p.interests == ("cooking",)
    assert p.participant == "learner-1" and p.enrolment_id == "enr-1"


def test_opt_in_with_a_borough_outside_its_combined_authority_is_refused() -> None:
    with pytest.raises(InvalidParticipant, match="not in combined authority"):
        participant_from_opt_in(opt_in(local_authority=BIRMINGHAM), NOW)


def test_a_repeat_opt_in_updates_preferences_but_keeps_place_and_history() -> None:
    existing = participant(
        status=ParticipantStatus.WAITING,
        declined_volunteers=("v-9",),
        waiting_since=NOW - timedelta(days=10),
    )
    incoming = participant_from_opt_in(opt_in(availability=("tue-pm",)), NOW)
    merged = merge_opt_in(existing, incoming)
    assert merged.availability == ("tue-pm",)
    assert merged.waiting_since == NOW - timedelta(days=10)
    assert merged.declined_volunteers == ("v-9",)
    assert merged.status is ParticipantStatus.WAITING


def test_a_participant_whose_match_ended_rejoins_the_pool_on_a_new_opt_in() -> None:
    existing = participant(status=ParticipantStatus.ENDED, previous_volunteers=("v-1",))
    merged = merge_opt_in(existing, participant_from_opt_in(opt_in(), NOW))
    assert merged.status is ParticipantStatus.WAITING
    assert merged.waiting_since == NOW
    assert merged.previous_volunteers == ("v-1",)


def test_a_repeat_opt_in_never_resets_a_pending_proposal() -> None:
    existing = participant(status=ParticipantStatus.PROPOSED)
    merged = merge_opt_in(existing, participant_from_opt_in(opt_in(), NOW))
    assert merged.status is ParticipantStatus.PROPOSED


# ------------------------------------------------------------------ volunteers


def details(**overrides: object) -> VolunteerDetails:
    base = VolunteerDetails(
        local_authority=OLDHAM,
        capacity=2,
        dbs_expires_on=TODAY + timedelta(days=100),
        availability=("mon-am",),
        interests=("Chess", "chess "),
        consent_matching=True,
        background=BackgroundFields(Ethnicity.WHITE_BRITISH, Religion.NO_RELIGION, "GB"),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_register_then_update_a_volunteer() -> None:
    v = register_or_update_volunteer(None, "v-1", details(), NOW)
    assert v.combined_authority is GM and v.version == 1 and v.registered_at == NOW
    assert v.interests == ("chess",)
    later = NOW + timedelta(days=1)
    updated = register_or_update_volunteer(
        replace(v, active=1), "v-1", details(local_authority=WIGAN, capacity=3), later
    )
    assert updated.version == 2 and updated.registered_at == NOW and updated.updated_at == later
    assert updated.active == 1 and updated.free_capacity == 2


def test_volunteer_rules() -> None:
    with pytest.raises(DomainError, match="unknown local authority"):
        register_or_update_volunteer(None, "v-1", details(local_authority="E09999999"), NOW)
    busy = replace(register_or_update_volunteer(None, "v-1", details(), NOW), active=1)
    with pytest.raises(DomainError, match="cannot move to another combined authority"):
        register_or_update_volunteer(busy, "v-1", details(local_authority=BIRMINGHAM), NOW)
    no_consent = register_or_update_volunteer(None, "v-2", details(consent_matching=False), NOW)
    assert no_consent.background is None


def test_volunteer_events_carry_no_background_fields() -> None:
    v = register_or_update_volunteer(None, "v-1", details(age_band=None), NOW)
    registered = volunteer_event(v, created=True)
    updated = volunteer_event(v, created=False)
    assert isinstance(registered, VolunteerRegistered) and isinstance(updated, VolunteerUpdated)
    for event in (registered, updated):
        body = event.model_dump_json()
        for forbidden in ("ethnicity", "religion", "country_of_birth", "white_british", "GB"):
            assert forbidden not in body
    assert registered.capacity == 2 and registered.availability == ("mon-am",)


def test_dbs_expiry_is_announced_once_per_lapsed_date() -> None:
    v = volunteer(dbs_expires_on=TODAY - timedelta(days=1))
    assert needs_dbs_expiry_notice(v, TODAY)
    announced = replace(v, dbs_expiry_notified_for=v.dbs_expires_on)
    assert not needs_dbs_expiry_notice(announced, TODAY)
    renewed = replace(announced, dbs_expires_on=TODAY + timedelta(days=365))
    assert not needs_dbs_expiry_notice(renewed, TODAY)
    lapsed_again = TODAY + timedelta(days=366)
    assert needs_dbs_expiry_notice(renewed, lapsed_again)
    event = volunteer_dbs_expired(v, ["m-2", "m-1"])
    assert event.paused_match_ids == ("m-1", "m-2")
    assert event.dbs_expired_on == v.dbs_expires_on


# ------------------------------------------------------------------ batch policy


def test_batch_policy() -> None:
    policy = BatchPolicy(threshold=5, window=timedelta(minutes=5))
    recent = NOW - timedelta(minutes=1)
    assert policy.should_run(now=NOW, last_run_at=recent, waiting=8, arrived=5)
    assert not policy.should_run(now=NOW, last_run_at=recent, waiting=8, arrived=4)
    assert policy.should_run(now=NOW, last_run_at=NOW - timedelta(minutes=5), waiting=1, arrived=0)
    assert policy.should_run(now=NOW, last_run_at=None, waiting=1, arrived=1)
    assert not policy.should_run(now=NOW, last_run_at=None, waiting=0, arrived=0)


# ------------------------------------------------------------------ matches


def proposed_match() -> Match:
    v = volunteer().view()
    p = participant()
    proposal = Proposal(v.volunteer_id, p.participant, score(v, p.view(), Weights()), 0.75)
    return propose(proposal, v, p, match_id="m-1", run_id="run-1", now=NOW)


def test_a_proposal_carries_score_bridging_slots_and_explanation() -> None:
    m = proposed_match()
    assert m.status is MatchStatus.PROPOSED and m.local_authority == OLDHAM
    assert set(m.bridging_dimensions) == {
        "ethnicity_group",
        "religion",
        "country_of_birth",
        "age_band",
    }
    assert m.shared_slots == ("mon-am",)
    assert "Participant waiting 3 days" in m.explanation
    event = match_proposed(m)
    assert event.score == m.score and event.explanation == m.explanation
    assert event.score_components["religion"] == Weights().religion
    assert event.waited_since == NOW - timedelta(days=3) and event.run_id == "run-1"


def test_accept_confirms_and_keeps_the_participant_matched() -> None:
    t = accept(proposed_match(), volunteer(), today=TODAY, now=NOW, by="coord-1")
    assert t.match.status is MatchStatus.CONFIRMED and t.match.decided_by == "coord-1"
    assert (t.participant_from, t.participant_to) == (
        ParticipantStatus.PROPOSED,
        ParticipantStatus.MATCHED,
    )
    assert t.volunteer_active_delta == 0
    confirmed = match_confirmed(t.match)
    assert confirmed.cross_background and confirmed.confirmed_at == NOW


def test_a_volunteer_whose_dbs_lapsed_cannot_be_confirmed() -> None:
    lapsed = volunteer(dbs_expires_on=TODAY - timedelta(days=1))
    with pytest.raises(VolunteerIneligible, match="DBS check expired"):
        accept(proposed_match(), lapsed, today=TODAY, now=NOW, by="c")
    with pytest.raises(VolunteerIneligible, match="no longer registered"):
        accept(proposed_match(), None, today=TODAY, now=NOW, by="c")


def test_decline_returns_the_participant_to_the_pool_and_excludes_the_pair() -> None:
    t = decline(proposed_match(), "lives too far", now=NOW, by="coord-1")
    assert t.match.status is MatchStatus.DECLINED
    assert t.participant_to is ParticipantStatus.WAITING
    assert t.exclude_as == "declined" and t.reenter_pool and not t.restart_wait
    assert t.volunteer_active_delta == -1
    assert match_declined(t.match).reason == "lives too far"


def test_end_frees_the_volunteer_and_optionally_rematches() -> None:
    confirmed = accept(proposed_match(), volunteer(), today=TODAY, now=NOW, by="c").match
    later = NOW + timedelta(days=60)
    t = end(confirmed, "programme finished", 9, now=later)
    assert t.match.status is MatchStatus.ENDED and t.participant_to is ParticipantStatus.ENDED
    assert t.volunteer_active_delta == -1 and t.exclude_as == "previous"
    ended = match_ended(t.match)
    assert ended.meetings_count == 9 and ended.ended_at == later
    again = end(confirmed, "volunteer moved away", 2, now=later, rematch=True)
    assert again.participant_to is ParticipantStatus.WAITING
    assert again.restart_wait and again.reenter_pool


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (MatchStatus.CONFIRMED, "accept"),
        (MatchStatus.DECLINED, "decline"),
        (MatchStatus.PROPOSED, "end"),
        (MatchStatus.ENDED, "end"),
    ],
)
def test_transitions_from_the_wrong_state_are_refused(status: MatchStatus, action: str) -> None:
    m = replace(proposed_match(), status=status)
    with pytest.raises(InvalidTransition, match=f"is {status.value}"):
        if action == "accept":
            accept(m, volunteer(), today=TODAY, now=NOW, by="c")
        elif action == "decline":
            decline(m, "x", now=NOW, by="c")
        else:
            end(m, "x", 0, now=NOW)


# ------------------------------------------------------------------ withdrawal


def proposed_and_confirmed() -> list[Match]:
    proposed = replace(proposed_match(), match_id="m-1")
    confirmed = replace(proposed_match(), match_id="m-2", status=MatchStatus.CONFIRMED)
    return [proposed, confirmed]


def test_withdrawn_consent_declines_proposals_and_drops_the_background_only() -> None:
    waiting = participant(status=ParticipantStatus.PROPOSED)
    w = withdraw(waiting, proposed_and_confirmed(), "consent_withdrawn", now=NOW, erase=False)
    (closed,) = w.closed  # a confirmed pair goes on meeting
    assert closed.match.status is MatchStatus.DECLINED and closed.match.decided_by == SYSTEM
    assert closed.match.decline_reason == "consent_withdrawn" and closed.match.decided_at == NOW
    assert closed.expected_status is MatchStatus.PROPOSED and closed.volunteer_active_delta == -1
    assert w.participant.status is ParticipantStatus.ENDED and not w.erased
    assert w.participant.background is None and not w.participant.consent_matching
    assert w.participant.availability == waiting.availability


def test_withdrawn_consent_keeps_a_matched_participant_matched() -> None:
    matched = participant(status=ParticipantStatus.MATCHED)
    w = withdraw(matched, [], "consent_withdrawn", now=NOW, erase=False)
    assert w.participant.status is ParticipantStatus.MATCHED and w.closed == ()


def test_erasure_ends_confirmed_matches_and_scrubs_every_personal_field() -> None:
    matched = participant(status=ParticipantStatus.MATCHED, languages=("ar",), interests=("x",))
    w = withdraw(matched, proposed_and_confirmed(), "participant_erased", now=NOW, erase=True)
    declined, ended = (t.match for t in w.closed)
    assert declined.status is MatchStatus.DECLINED
    assert ended.status is MatchStatus.ENDED and ended.end_reason == "participant_erased"
    assert ended.meetings_count == 0 and ended.ended_at == NOW
    after = w.participant
    assert w.erased and after.status is ParticipantStatus.ENDED
    assert (after.age_band, after.sex, after.gender_preference, after.background) == (None,) * 4
    assert after.languages == after.availability == after.interests == ()
