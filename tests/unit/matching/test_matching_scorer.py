"""The scorer rewards difference, shared time and interests, and locality; its weights
come from a TOML file with per-combined-authority sections."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from matching_factories import (
    GM,
    NOW,
    OLDHAM,
    SAME,
    WIGAN,
    participant_view,
    volunteer_view,
)

from bench.matching_optimiser import random_pool
from services.matching.domain import (
    BridgingDimension,
    Weights,
    WeightsError,
    explain,
    score,
    score_value,
    weights_from_toml,
)
from services.matching.settings import MatchingSettings
from shared.contracts.reference import AgeBand, CombinedAuthority, Religion

W = Weights()


@pytest.mark.parametrize(
    ("dimension", "change"),
    [
        (BridgingDimension.ETHNICITY_GROUP, {"ethnicity_group": "asian"}),
        (BridgingDimension.RELIGION, {"religion": Religion.MUSLIM}),
        (BridgingDimension.COUNTRY_OF_BIRTH, {"country_of_birth": "PK"}),
        (BridgingDimension.AGE_BAND, {"age_band": AgeBand.AGE_65_PLUS}),
    ],
)
def test_difference_on_each_dimension_adds_its_weight(
    dimension: BridgingDimension, change: dict[str, object]
) -> None:
    v = volunteer_view()
    alike = score(v, participant_view(), W)
    different = score(v, participant_view(bridging=replace(SAME, **change)), W)
    assert alike.bridging_dimensions == ()
    assert different.bridging_dimensions == (dimension,)
    assert different.total == pytest.approx(alike.total + getattr(W, dimension.value))
    assert different.components[dimension.value] == getattr(W, dimension.value)


def test_all_four_differences_add_up() -> None:
    other = replace(
        SAME,
        ethnicity_group="black",
        religion=Religion.HINDU,
        country_of_birth="NG",
        age_band=AgeBand.AGE_16_18,
    )
    b = score(volunteer_view(), participant_view(bridging=other), W)
    assert set(b.bridging_dimensions) == set(BridgingDimension)
    bonus = W.ethnicity_group + W.religion + W.country_of_birth + W.age_band
    assert b.total == pytest.approx(score(volunteer_view(), participant_view(), W).total + bonus)


def test_religion_not_stated_or_unknown_is_never_a_difference() -> None:
    for religion in (Religion.NOT_STATED, None):
        b = score(volunteer_view(), participant_view(bridging=replace(SAME, religion=religion)), W)
        assert BridgingDimension.RELIGION not in b.bridging_dimensions


def test_same_borough_preferred_over_neighbouring_borough() -> None:
    p = participant_view(local_authority=OLDHAM)
    same = score(volunteer_view(local_authority=OLDHAM), p, W)
    neighbour = score(volunteer_view(local_authority=WIGAN), p, W)
    assert same.same_local_authority and not neighbour.same_local_authority
    assert same.total - neighbour.total == pytest.approx(
        W.same_local_authority - W.neighbouring_local_authority
    )
    assert same.total > neighbour.total


def test_shared_slots_and_interests_raise_the_score_up_to_their_caps() -> None:
    slots = frozenset({"mon-am", "tue-am", "wed-am", "thu-am", "fri-am"})
    v = volunteer_view(availability=slots, interests=frozenset({"chess", "music", "films"}))
    one = score(v, participant_view(availability=frozenset({"mon-am"})), W)
    two = score(v, participant_view(availability=frozenset({"mon-am", "tue-am"})), W)
    five = score(v, participant_view(availability=slots), W)
    assert two.total - one.total == pytest.approx(W.shared_slot)
    assert five.components["shared_slots"] == W.shared_slot * W.max_shared_slots
    assert five.shared_slots == tuple(sorted(slots))
    none = score(v, participant_view(interests=frozenset()), W)
    music = score(v, participant_view(interests=frozenset({"music"})), W)
    assert music.total - none.total == pytest.approx(W.shared_interest)
    assert music.shared_interests == ("music",)


def test_shared_language_counts_once() -> None:
    p = participant_view(languages=frozenset({"ar", "en"}))
    without = score(volunteer_view(languages=frozenset({"pl"})), p, W)
    with_two = score(volunteer_view(languages=frozenset({"ar", "en"})), p, W)
    assert with_two.total - without.total == pytest.approx(W.shared_language)
    assert with_two.shared_languages == ("ar", "en")


def test_fast_score_equals_explained_score_and_its_components() -> None:
    vols, parts = random_pool(7, 30, 30, now=NOW)
    for v in vols:
        for p in parts:
            b = score(v, p, W)
            assert b.total == score_value(v, p, W)
            assert b.total == pytest.approx(sum(b.components.values()))


def test_weights_per_combined_authority_override_the_default() -> None:
    book = weights_from_toml(
        """
        [default]
        religion = 1.5
        same_local_authority = 2.0
        [authorities.E47000001]
        same_local_authority = 4.0
        """
    )
    gm = book.for_authority(GM)
    tv = book.for_authority(CombinedAuthority.TEES_VALLEY)
    assert gm.same_local_authority == 4.0 and gm.religion == 1.5
    assert tv.same_local_authority == 2.0 and tv.religion == 1.5
    v, p = volunteer_view(), participant_view()
    assert score(v, p, gm).total - score(v, p, tv).total == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\nreligon = 1.0", "religon"),
        ("[authorities.E99999999]\nbase = 1.0", "not a combined authority code"),
        ("[default]\nbase = -1", "greater than or equal to 0"),
        (
            "[default]\nsame_local_authority = 0\nneighbouring_local_authority = 1",
            "same borough is preferred",
        ),
        ("[weights]\nbase = 1", "unknown top-level"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_bad_weights_files_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        weights_from_toml(text)


def test_shipped_weights_file_parses_and_is_the_default_setting() -> None:
    path = MatchingSettings().weights_file
    assert path == Path(__file__).resolve().parents[3] / "services/matching/weights.toml"
    book = weights_from_toml(path.read_text())
    assert book.for_authority(GM).same_local_authority > book.default.same_local_authority
    assert book.default == Weights()


def test_explanation_names_dimensions_but_never_background_values() -> None:
    other = replace(SAME, ethnicity_group="asian", religion=Religion.MUSLIM, country_of_birth="PK")
    b = score(volunteer_view(local_authority=WIGAN), participant_view(bridging=other), W)
    text = explain(b, WIGAN, OLDHAM, timedelta(days=12, hours=3))
    assert "ethnic group, religion or belief and country of birth" in text
    assert "mon-am" in text and "cooking" in text
    assert "Neighbouring boroughs (Wigan and Oldham)" in text
    assert "waiting 12 days" in text
    for value in ("asian", "white", "muslim", "christian", "PK", "GB"):
        assert value not in text.lower().split() and value not in text


def test_explanation_without_bridging_says_so() -> None:
    b = score(volunteer_view(), participant_view(bridging=None), W)
    text = explain(b, OLDHAM, OLDHAM, timedelta(0))
    assert text.startswith("No background-based bridging")
    assert "Same borough (Oldham)" in text
