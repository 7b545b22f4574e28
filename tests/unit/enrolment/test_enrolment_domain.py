"""Submission rules, pseudonyms, age bands and the events an accepted enrolment announces."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from services.enrolment.domain import (
    PROGRAMME_LEVELS,
    Pseudonymiser,
    accept,
    age_band,
    check_submission,
)
from shared.contracts.enrolment import (
    EnrolmentAccepted,
    EnrolmentSubmission,
    ParticipantOptedIn,
    RejectionCode,
)
from shared.contracts.reference import ESOL_LEVELS, AgeBand, Level, Programme
from tests.unit.enrolment.enrolment_fakes import (
    NOW,
    OTHER_PROVIDER,
    PROVIDER,
    PSEUDONYMS,
    TODAY,
    submission,
)


def errors_of(raw: Any) -> list[tuple[str, str]]:
    checked = check_submission(raw, PROVIDER, TODAY)
    return [(e.pointer, e.code.value) for e in checked.errors]


def test_valid_submission_passes_and_is_normalised() -> None:
    checked = check_submission(
        submission(postcode="ol1 1aa", country_of_birth="sy", interests=[" Cooking "]),
        PROVIDER,
        TODAY,
    )
    assert checked.ok and checked.submission is not None
    assert checked.submission.postcode == "OL1 1AA"
    assert checked.submission.country_of_birth == "SY"
    assert checked.submission.interests == ("cooking",)


def test_schema_errors_have_pointers_and_never_echo_values() -> None:
    raw = submission(
        date_of_birth="1988-13-45",
        sex="X",
        consent={"matching": "perhaps"},
        availability=["mon-am", "someday"],
        ethnicty="white_british",
    )
    checked = check_submission(raw, PROVIDER, TODAY)
    pointers = {e.pointer for e in checked.errors}
    assert pointers == {
        "/date_of_birth",
        "/sex",
        "/consent/matching",
        "/availability/1",
        "/ethnicty",
    }
    assert all(e.code is RejectionCode.SCHEMA_INVALID for e in checked.errors)
    messages = " ".join(e.message for e in checked.errors)
    assert "1988-13-45" not in messages and "someday" not in messages


def test_non_object_is_refused_at_the_root() -> None:
    assert errors_of([1, 2]) == [("", "schema_invalid")]


def test_local_authority_must_belong_to_the_stated_combined_authority() -> None:
    # Birmingham is West Midlands, not Greater Manchester.
    assert errors_of(submission(local_authority="E08000025")) == [
        ("/local_authority", "local_authority_mismatch")
    ]
    # Well-formed but not a local authority of any combined authority.
    assert errors_of(submission(local_authority="E09000001")) == [
        ("/local_authority", "local_authority_mismatch")
    ]


def test_dates_must_be_in_order() -> None:
    assert errors_of(submission(planned_end_date="2025-09-01")) == [
        ("/planned_end_date", "dates_out_of_order")
    ]
    assert errors_of(submission(date_of_birth="2030-01-01", year_of_arrival=None)) == [
        ("/date_of_birth", "dates_out_of_order")
    ]


def test_learner_must_be_at_least_sixteen_at_start() -> None:
    assert errors_of(submission(date_of_birth="2009-09-09")) == [
        ("/date_of_birth", "age_out_of_range")
    ]
    assert errors_of(submission(date_of_birth="2009-09-08")) == []  # 16 on the start date


@pytest.mark.parametrize("level", [lv.value for lv in ESOL_LEVELS])
def test_every_esol_level_is_valid_for_esol(level: str) -> None:
    assert errors_of(submission(level=level)) == []


@pytest.mark.parametrize(
    ("programme", "level", "ok"),
    [
        ("esol", "level_3", False),
        ("esol", None, False),
        ("functional_maths", "pre_entry", False),
        ("functional_maths", "level_2", True),
        ("digital", "entry_3", True),
        ("digital", "entry_1", False),
        ("employability", None, True),
        ("vocational", "level_3", True),
        ("vocational", "entry_3", False),
    ],
)
def test_level_must_be_valid_for_the_programme(programme: str, level: str | None, ok: bool) -> None:
    expected = [] if ok else [("/level", "level_invalid_for_programme")]
    assert errors_of(submission(programme=programme, level=level)) == expected


def test_level_table_covers_every_programme() -> None:
    assert set(PROGRAMME_LEVELS) == set(Programme)


def test_year_of_arrival_between_birth_and_now() -> None:
    assert errors_of(submission(year_of_arrival=1980)) == [
        ("/year_of_arrival", "year_of_arrival_invalid")
    ]
    assert errors_of(submission(year_of_arrival=TODAY.year + 1)) == [
        ("/year_of_arrival", "year_of_arrival_invalid")
    ]


def test_provider_may_submit_only_for_contracted_combined_authorities() -> None:
    raw = submission(combined_authority="E47000007", local_authority="E08000025")
    assert errors_of(raw) == [("/combined_authority", "not_contracted")]
    assert check_submission(raw, OTHER_PROVIDER, TODAY).ok


def test_all_rule_errors_are_reported_together() -> None:
    raw = submission(
        combined_authority="E47000007",
        local_authority="E08000004",
        planned_end_date="2025-01-01",
        level="level_3",
    )
    assert [code for _, code in errors_of(raw)] == [
        "not_contracted",
        "local_authority_mismatch",
        "dates_out_of_order",
        "level_invalid_for_programme",
    ]


@pytest.mark.parametrize(
    ("born", "band"),
    [
        ("2009-09-08", AgeBand.AGE_16_18),
        ("2006-09-09", AgeBand.AGE_16_18),  # 18 until the day after the start date
        ("2006-09-08", AgeBand.AGE_19_24),
        ("1990-01-01", AgeBand.AGE_35_49),
        ("1960-09-08", AgeBand.AGE_65_PLUS),
        ("2010-01-01", None),
    ],
)
def test_age_band_on_the_start_date(born: str, band: AgeBand | None) -> None:
    assert age_band(date.fromisoformat(born), date(2025, 9, 8)) == band


def test_pseudonyms_are_stable_keyed_and_scoped_by_provider() -> None:
    a = PSEUDONYMS.learner("10012345", "LRN0001")
    assert a == PSEUDONYMS.learner("10012345", "LRN0001")
    assert a != PSEUDONYMS.learner("10054321", "LRN0001")
    assert a != Pseudonymiser(b"another-key").learner("10012345", "LRN0001")
    assert a.startswith("lp_") and "LRN0001" not in a


def test_enrolment_id_is_the_natural_key() -> None:
    s = EnrolmentSubmission.model_validate(submission())
    same = EnrolmentSubmission.model_validate(submission(submission_ref="other", planned_hours=9))
    other_aim = EnrolmentSubmission.model_validate(submission(learning_aim_ref="ZESOL003"))
    other_start = EnrolmentSubmission.model_validate(submission(start_date="2025-09-09"))
    eid = PSEUDONYMS.enrolment_id("10012345", s)
    assert eid == PSEUDONYMS.enrolment_id("10012345", same)
    assert eid != PSEUDONYMS.enrolment_id("10012345", other_aim)
    assert eid != PSEUDONYMS.enrolment_id("10012345", other_start)


def _accepted(**overrides: Any) -> tuple[Any, list[Any]]:
    s = EnrolmentSubmission.model_validate(submission(**overrides))
    return accept(s, PROVIDER, PSEUDONYMS, NOW)


def test_accepted_events_carry_the_pseudonym_age_band_and_no_identifiers() -> None:
    enrolment, events = _accepted()
    accepted, opted_in = events
    assert isinstance(accepted, EnrolmentAccepted)
    assert isinstance(opted_in, ParticipantOptedIn)
    assert accepted.learner == enrolment.learner == PSEUDONYMS.learner("10012345", "LRN0001")
    assert accepted.age_band is AgeBand.AGE_35_49
    assert accepted.local_authority == "E08000004"
    assert accepted.level is Level.ENTRY_2
    for event in events:
        body = event.model_dump_json()
        for personal in ("LRN0001", "1988-05-17", "Amira", "Haddad", "OL1 1AA"):
            assert personal not in body


def test_opted_in_carries_background_only_with_matching_consent() -> None:
    _, with_consent = _accepted()
    assert with_consent[1].background is not None
    assert with_consent[1].background.ethnicity == "other_arab"
    assert with_consent[1].consent.matching is True

    _, without = _accepted(consent={"matching": False, "research": True})
    opted_in = without[1]
    assert opted_in.background is None
    assert opted_in.consent.matching is False
    assert "other_arab" not in opted_in.model_dump_json()
    # Aggregate equality monitoring still gets it, with the consent that governs it.
    assert without[0].background.ethnicity == "other_arab"
    assert without[0].consent.research is True


def test_no_opt_in_event_without_the_wish() -> None:
    _, events = _accepted(wants_conversation_partner=False)
    assert [type(e).__name__ for e in events] == ["EnrolmentAccepted"]


def test_enrolment_keeps_the_submission_for_the_provider_only() -> None:
    enrolment, _ = _accepted()
    assert enrolment.submission.learner_ref == "LRN0001"
    assert "LRN0001" not in json.dumps(enrolment.ref(), default=str)
