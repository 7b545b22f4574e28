"""The population generator: it follows the reference tables, it is reproducible by seed,
everything it would send passes the enrolment service's own rules, and bad input is
refused before any traffic."""

from __future__ import annotations

from collections import Counter
from datetime import date

import numpy as np
import pytest
from pydantic import SecretStr, ValidationError

from services.enrolment.domain import (
    Enrolment,
    Lifecycle,
    Provider,
    Pseudonymiser,
    accept,
    age_band,
    apply_progress,
    check_valid_submission,
)
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Ethnicity,
    Programme,
)
from simulator.driver import RunOptions
from simulator.plan import decision_for, schedule, total_operations
from simulator.population import (
    Generator,
    Population,
    SimulationConfig,
    generate,
    parse_authority,
)
from simulator.reference import ETHNICITIES, RELIGIONS, load_reference

AS_OF = date(2025, 7, 31)
GM = CombinedAuthority.GREATER_MANCHESTER
OLDHAM = "E08000004"


def population(seed: int = 7, learners: int = 400, **kw: object) -> Population:
    return generate(
        SimulationConfig(seed=seed, learners=learners, as_of=AS_OF, **kw),
        load_reference(),
    )


# --------------------------------------------------------------- reference tables


def test_every_borough_of_the_six_authorities_has_a_profile_whose_joint_matches_its_tables() -> (
    None
):
    ref = load_reference()
    codes = {code for las in LOCAL_AUTHORITIES.values() for code in las}
    assert set(ref.boroughs) == codes
    for b in ref.boroughs.values():
        joint = b.joint
        assert joint.sum() == pytest.approx(1.0)
        eth = joint.sum(axis=(1, 2))
        rel = joint.sum(axis=(0, 2))
        assert np.allclose(eth, [b.ethnicity[e] for e in ETHNICITIES], atol=1e-6), b.name
        assert np.allclose(rel, [b.religion[r] for r in RELIGIONS], atol=1e-6), b.name
        assert joint[:, :, 1].sum() == pytest.approx(b.born_outside_uk, abs=1e-6)


def test_the_fit_keeps_the_national_pattern_of_who_is_what() -> None:
    oldham = load_reference().boroughs[OLDHAM]
    joint = oldham.joint
    pakistani = joint[ETHNICITIES.index(Ethnicity.ASIAN_PAKISTANI)]
    british = joint[ETHNICITIES.index(Ethnicity.WHITE_BRITISH)]
    muslim = RELIGIONS.index(next(r for r in RELIGIONS if r.value == "muslim"))
    assert pakistani[muslim].sum() / pakistani.sum() > 0.9
    assert british[muslim].sum() / british.sum() < 0.02
    assert british[:, 1].sum() / british.sum() < 0.05  # rarely born abroad


# ----------------------------------------------------------------- distributions


def test_people_in_a_borough_follow_its_ethnicity_religion_and_birthplace_tables() -> None:
    gen = Generator(
        SimulationConfig(seed=3, learners=1, authorities=(GM,), as_of=AS_OF), load_reference()
    )
    gen.borough_weights[GM] = {OLDHAM: 1.0}
    people = [gen.person(GM, "other") for _ in range(6000)]
    profile = load_reference().boroughs[OLDHAM]
    ethnicity = Counter(p.ethnicity for p in people)
    for e in (Ethnicity.WHITE_BRITISH, Ethnicity.ASIAN_PAKISTANI, Ethnicity.ASIAN_BANGLADESHI):
        assert ethnicity[e] / len(people) == pytest.approx(profile.ethnicity[e], abs=0.02), e
    religion = Counter(p.religion for p in people)
    for r, share in profile.religion.items():
        assert religion[r] / len(people) == pytest.approx(share, abs=0.02), r
    abroad = sum(p.born_abroad for p in people) / len(people)
    assert abroad == pytest.approx(profile.born_outside_uk, abs=0.015)
    assert all((p.country_of_birth == "GB") != p.born_abroad for p in people)


def test_esol_learners_were_born_abroad_and_do_not_speak_english_as_first_language() -> None:
    pop = population(learners=600)
    esol = [e.submission for e in pop.enrolments() if e.submission.programme is Programme.ESOL]
    assert len(esol) > 100
    assert all(s.country_of_birth != "GB" and s.first_language != "en" for s in esol)
    assert all(s.year_of_arrival is not None for s in esol)


def test_learners_spread_over_boroughs_by_population_and_ages_follow_the_table() -> None:
    pop = population(seed=11, learners=3000, authorities=(GM,))
    ref = load_reference()
    first = [learner.enrolments[0].submission for learner in pop.learners]
    by_borough = Counter(s.local_authority for s in first)
    total_population = sum(b.population for b in ref.boroughs_of(GM))
    for code in LOCAL_AUTHORITIES[GM]:
        expected = ref.boroughs[code].population / total_population
        assert by_borough[code] / len(first) == pytest.approx(expected, abs=0.025), code
    bands = Counter(
        age_band(s.date_of_birth, s.start_date) for s in first if s.programme is Programme.ESOL
    )
    table = dict(
        zip(ref.programmes["age_bands"], ref.programmes["age_by_role"]["esol"], strict=True)
    )
    esol_total = sum(bands.values())
    for band, count in bands.items():
        assert band is not None
        assert count / esol_total == pytest.approx(table[band.value], abs=0.04), band


def test_programme_mix_withdrawals_and_opt_ins_are_in_the_expected_range() -> None:
    pop = population(seed=5, learners=3000)
    enrolments = list(pop.enrolments())
    programmes = Counter(e.submission.programme for e in enrolments)
    assert programmes[Programme.ESOL] / len(enrolments) == pytest.approx(0.35, abs=0.05)
    ended = [e for e in enrolments if any(s.kind in ("completion", "withdrawal") for s in e.steps)]
    withdrawn = [e for e in ended if any(s.kind == "withdrawal" for s in e.steps)]
    assert 0.05 < len(withdrawn) / len(ended) < 0.3
    opted = [e.submission for e in enrolments if e.submission.wants_conversation_partner]
    assert opted and all(s.availability for s in opted)
    firsts = [learner.enrolments[0].submission for learner in pop.learners]
    # Consent to matching on background is asked of those who opt in.
    assert not [s for s in firsts if s.consent.matching and not s.wants_conversation_partner]
    assert 0.5 < sum(s.consent.matching for s in opted) / len(opted) < 0.9


# ------------------------------------------------------------------ reproducibility


def test_the_same_seed_gives_the_same_population_and_submissions() -> None:
    a, b = population(seed=42), population(seed=42)
    assert a.summary() == b.summary()
    assert [e.submission for e in a.enrolments()] == [e.submission for e in b.enrolments()]
    assert [e.steps for e in a.enrolments()] == [e.steps for e in b.enrolments()]
    assert [v.body for v in a.volunteers] == [v.body for v in b.volunteers]


def test_another_seed_gives_other_learners_with_other_refs() -> None:
    a, b = population(seed=1), population(seed=2)
    refs_a = {learner.learner_ref for learner in a.learners}
    refs_b = {learner.learner_ref for learner in b.learners}
    assert not refs_a & refs_b
    assert [e.submission for e in a.enrolments()] != [e.submission for e in b.enrolments()]


def test_decisions_depend_only_on_the_seed_and_the_pair() -> None:
    policy = load_reference().programmes["decisions"]
    pairs = [{"participant": f"lp_{i}", "volunteer_id": f"v{i % 17}"} for i in range(2000)]
    first = [decision_for(9, m, policy) for m in pairs]
    assert first == [decision_for(9, m, policy) for m in reversed(pairs)][::-1]
    accepted = sum(d["decision"] == "accept" for d in first) / len(first)
    assert accepted == pytest.approx(policy["accept"], abs=0.04)
    assert all(
        d.get("reason") in policy["decline_reasons"] for d in first if d["decision"] == "decline"
    )


# -------------------------------------------------- what is sent passes the real rules


def test_every_submission_and_progress_record_passes_the_enrolment_rules() -> None:
    """The enrolment service's own pure rules accept every generated submission, and
    every chain of progress records applies in order (no illegal transition)."""
    from pydantic import TypeAdapter

    from services.enrolment.domain import Progress

    progress = TypeAdapter(Progress)
    pop = population(seed=8, learners=800)
    provider = Provider("p", "10000000", frozenset(CombinedAuthority))
    pseudonyms = Pseudonymiser(b"k" * 32)
    now = __import__("datetime").datetime(2025, 7, 31, 12)
    kinds: Counter[str] = Counter()
    for planned in pop.enrolments():
        checked = check_valid_submission(planned.submission, provider, AS_OF)
        assert checked.ok, [e.message for e in checked.errors]
        enrolment, _ = accept(planned.submission, provider, pseudonyms, now)
        assert isinstance(enrolment, Enrolment) and isinstance(enrolment.lifecycle, Lifecycle)
        for step in planned.steps:
            assert step.on <= AS_OF
            enrolment = apply_progress(
                enrolment, progress.validate_python(dict(step.body)), AS_OF, now
            ).enrolment
            kinds[step.kind] += 1
    assert {"attendance", "completion", "withdrawal", "assessment"} <= set(kinds)


def test_the_schedule_sends_each_enrolment_before_its_progress_and_counts_everything() -> None:
    pop = population(seed=4, learners=300)
    months = schedule(pop)
    assert [m.month for m in months] == sorted(m.month for m in months)
    submitted: set[tuple[object, ...]] = set()
    for month in months:
        submitted |= {e.natural_key for e in month.enrolments}
        for enrolment, steps in month.chains:
            assert enrolment.natural_key in submitted
            assert list(steps) == sorted(steps, key=lambda s: s.on)
            assert all((s.on.year, s.on.month) == month.month for s in steps)
    enrolments = list(pop.enrolments())
    assert total_operations(months, pop) == len(pop.volunteers) + len(enrolments) + sum(
        len(e.steps) for e in enrolments
    )


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("field", "value"),
    [("learners", 0), ("learners", -3), ("months", 0), ("volunteers", -1), ("authorities", ())],
)
def test_invalid_configs_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        SimulationConfig.model_validate({"as_of": AS_OF, field: value})
    assert field in str(info.value)


def test_authorities_by_code_or_name_and_unknown_ones_name_the_known() -> None:
    assert parse_authority("E47000001") is GM
    assert parse_authority("greater-manchester") is GM
    assert parse_authority("Cambridgeshire & Peterborough") is (
        CombinedAuthority.CAMBRIDGESHIRE_PETERBOROUGH
    )
    with pytest.raises(ValueError, match=r"unknown combined authority 'Narnia'.*E47000009"):
        parse_authority("Narnia")


def test_kafka_channel_needs_bootstrap_servers_and_rates_must_be_positive() -> None:
    base = {
        "enrolment_url": "http://e",
        "matching_url": "http://m",
        "provider_keys": (SecretStr("k"),),
    }
    with pytest.raises(ValidationError, match="kafka"):
        RunOptions.model_validate({**base, "channel": "kafka"})
    with pytest.raises(ValidationError, match="rate"):
        RunOptions.model_validate({**base, "rate": 0})
    assert RunOptions.model_validate({**base, "rate": 3.0}).effective_batch_size == 3
