"""Consent is structural: without matching consent, background fields are not stored and
cannot reach the scorer; with it, they are only compared, never exposed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from matching_factories import (
    NOW,
    opt_in,
    participant,
    volunteer,
)

from services.matching.domain import (
    BackgroundFields,
    ParticipantView,
    VolunteerView,
    Weights,
    participant_from_opt_in,
    score,
)
from services.matching.repository import participant_doc, volunteer_fields
from shared.contracts.enrolment import Consent
from shared.contracts.reference import AgeBand, Ethnicity, Religion

BACKGROUND_NAMES = {"ethnicity", "ethnicity_group", "religion", "country_of_birth", "background"}


class _Untouchable:
    """A background that fails the test if anything reads it."""

    def __getattribute__(self, name: str) -> object:
        raise AssertionError(f"background field {name!r} was read without consent")


def test_scorer_views_have_no_background_fields_except_the_consent_gated_profile() -> None:
    for view in (ParticipantView, VolunteerView):
        names = {f.name for f in dataclasses.fields(view)}
        assert names & BACKGROUND_NAMES == set()
        assert "bridging" in names


def test_opt_in_without_consent_never_reads_the_background() -> None:
    event = opt_in(consent=Consent(matching=False))
    trapped = event.model_construct(**{**dict(event), "background": _Untouchable()})
    p = participant_from_opt_in(trapped, NOW)
    assert p.background is None
    assert p.view().bridging is None


def test_the_trap_does_fire_when_consent_is_given() -> None:
    event = opt_in(consent=Consent(matching=True))
    trapped = event.model_construct(**{**dict(event), "background": _Untouchable()})
    with pytest.raises(AssertionError, match="was read without consent"):
        participant_from_opt_in(trapped, NOW)


def test_opt_in_with_consent_keeps_background_for_the_scorer_only() -> None:
    p = participant_from_opt_in(opt_in(), NOW)
    assert p.background == BackgroundFields(Ethnicity.OTHER_ARAB, Religion.MUSLIM, "SY")
    view = p.view()
    assert view.bridging is not None
    assert view.bridging.ethnicity_group == "other" and view.bridging.age_band is AgeBand.AGE_35_49


def test_records_built_without_consent_drop_any_background_given() -> None:
    bg = BackgroundFields(Ethnicity.ASIAN_PAKISTANI, Religion.MUSLIM, "PK")
    p = participant(consent_matching=False, background=bg)
    v = volunteer(consent_matching=False, background=bg)
    assert p.background is None and v.background is None
    assert p.view().bridging is None and v.view().bridging is None
    # ... and what would be stored has none either.
    assert participant_doc(p)["background"] is None
    assert volunteer_fields(v)["background"] is None


def test_age_band_is_a_bridging_dimension_only_with_consent() -> None:
    p = participant(consent_matching=False, background=None, age_band=AgeBand.AGE_16_18)
    assert p.view().bridging is None


profiles = st.builds(
    BackgroundFields,
    ethnicity=st.none() | st.sampled_from(Ethnicity),
    religion=st.none() | st.sampled_from(Religion),
    country_of_birth=st.none() | st.sampled_from(["GB", "PK", "SY", "PL", "NG"]),
)


@given(background=profiles, age=st.none() | st.sampled_from(AgeBand))
def test_a_non_consenting_participants_score_does_not_depend_on_their_background(
    background: BackgroundFields, age: AgeBand | None
) -> None:
    v = volunteer().view()
    reference = participant(consent_matching=False, background=None, age_band=None)
    other = participant(consent_matching=False, background=background, age_band=age)
    a, b = score(v, reference.view(), Weights()), score(v, other.view(), Weights())
    assert a == b
    assert b.bridging_dimensions == ()


@given(background=profiles)
def test_a_consenting_participant_is_not_matched_on_background_of_a_non_consenting_volunteer(
    background: BackgroundFields,
) -> None:
    v = volunteer(consent_matching=False).view()
    p = participant(background=background).view()
    assert score(v, p, Weights()).bridging_dimensions == ()
