"""A synthetic, realistic population for the six combined authorities. Pure: the same
:class:`SimulationConfig` (seed included) always gives the same population, the same
submissions and the same progress records, in the same order.

Who lives where follows the packaged reference tables (:mod:`simulator.reference`):
boroughs are weighted by mid-year population; each person's ethnic group, religion and
whether they were born abroad come from the borough's fitted joint distribution;
country of birth and first language follow from the ethnic group of people born
abroad. ESOL learners are drawn from residents born abroad whose first language is not
English; volunteers and other learners from all residents. Programmes, levels, ages,
attendance, completions, outcomes and withdrawals follow ``data/programmes.json``.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contracts.enrolment import Consent, EnrolmentSubmission
from shared.contracts.reference import (
    COMBINED_AUTHORITY_NAMES,
    ESOL_LEVELS,
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    FundModel,
    Level,
    Outcome,
    Programme,
    Religion,
    Sex,
    WithdrawalReason,
)
from simulator.reference import ETHNICITIES, RELIGIONS, BoroughProfile, ReferenceData

T = TypeVar("T")

MAX_LEARNERS = 2_000_000
SLOTS = tuple(
    f"{d}-{p}"
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    for p in ("am", "pm", "eve")
)
PROGRAMME_CODES = {
    Programme.ESOL: "ESOL",
    Programme.DIGITAL: "DIGI",
    Programme.EMPLOYABILITY: "EMPL",
    Programme.FUNCTIONAL_MATHS: "FSMA",
    Programme.FUNCTIONAL_ENGLISH: "FSEN",
    Programme.VOCATIONAL: "VOCA",
}
LEVEL_CODES = {
    None: "00",
    Level.PRE_ENTRY: "PE",
    Level.ENTRY_1: "E1",
    Level.ENTRY_2: "E2",
    Level.ENTRY_3: "E3",
    Level.LEVEL_1: "L1",
    Level.LEVEL_2: "L2",
    Level.LEVEL_3: "L3",
}
# Progress kinds in the order the ILR lifecycle allows them on one day.
STEP_ORDER = {
    "attendance": 0,
    "assessment": 1,
    "break": 2,
    "resume": 3,
    "completion": 4,
    "withdrawal": 4,
    "outcome": 5,
}

_AUTHORITY_SLUGS = {
    **{ca.value.lower(): ca for ca in CombinedAuthority},
    **{
        "".join(ch for ch in name.lower() if ch.isalnum()): ca
        for ca, name in COMBINED_AUTHORITY_NAMES.items()
    },
    **{ca.name.lower().replace("_", ""): ca for ca in CombinedAuthority},
}


def known_authorities() -> str:
    return ", ".join(f"{ca.value} ({COMBINED_AUTHORITY_NAMES[ca]})" for ca in CombinedAuthority)


def parse_authority(value: str) -> CombinedAuthority:
    """A combined authority from its ONS code or its name (any case, spaces or dashes)."""
    slug = "".join(ch for ch in value.lower() if ch.isalnum())
    try:
        return _AUTHORITY_SLUGS[slug]
    except KeyError:
        raise ValueError(
            f"unknown combined authority {value!r}; known: {known_authorities()}"
        ) from None


class SimulationConfig(BaseModel):
    """What to generate. Invalid values fail here, before any traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=1, ge=0)
    learners: int = Field(default=1000, ge=1, le=MAX_LEARNERS)
    volunteers: int | None = Field(
        default=None, ge=0, description="Default: one for every eight learners."
    )
    authorities: tuple[CombinedAuthority, ...] = Field(
        default=tuple(CombinedAuthority), min_length=1
    )
    as_of: date = Field(description="The simulated 'today': nothing is dated after it.")
    months: int = Field(default=12, ge=1, le=120, description="Enrolments start in this window.")

    @field_validator("authorities", mode="before")
    @classmethod
    def _authorities(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(
                dict.fromkeys(parse_authority(v) if isinstance(v, str) else v for v in value)
            )
        return value

    @property
    def volunteer_count(self) -> int:
        return self.volunteers if self.volunteers is not None else max(1, self.learners // 8)


# ------------------------------------------------------------------------- the people


@dataclass(frozen=True)
class Person:
    local_authority: str
    combined_authority: CombinedAuthority
    sex: Sex
    age_band: AgeBand
    ethnicity: Ethnicity
    religion: Religion
    born_abroad: bool
    country_of_birth: str
    first_language: str
    year_of_arrival_ago: int | None  # years before the first start date


@dataclass(frozen=True)
class Provider:
    provider_id: str
    name: str
    kind: str
    combined_authority: CombinedAuthority
    local_authority: str
    programmes: tuple[Programme, ...]
    key_index: int = 0


@dataclass(frozen=True)
class ProgressStep:
    on: date
    kind: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class PlannedEnrolment:
    provider: Provider
    submission: EnrolmentSubmission
    steps: tuple[ProgressStep, ...]

    @property
    def natural_key(self) -> tuple[str, str, str, date]:
        s = self.submission
        return (self.provider.provider_id, s.learner_ref, s.learning_aim_ref, s.start_date)


@dataclass(frozen=True)
class Learner:
    learner_ref: str
    person: Person
    enrolments: tuple[PlannedEnrolment, ...]


@dataclass(frozen=True)
class PlannedVolunteer:
    external_ref: str
    """``sim-<tag>-v<n>``: the coordinators' reference; matching issues the id."""
    person: Person
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Population:
    config: SimulationConfig
    tag: str
    providers: tuple[Provider, ...]
    learners: tuple[Learner, ...]
    volunteers: tuple[PlannedVolunteer, ...]
    stats: Mapping[str, int] = field(default_factory=dict)

    def enrolments(self) -> Iterator[PlannedEnrolment]:
        for learner in self.learners:
            yield from learner.enrolments

    def summary(self) -> dict[str, Any]:
        """Counts for ``--dry-run`` and logs (no individual's data)."""
        enrolments = list(self.enrolments())
        steps = Counter(step.kind for e in enrolments for step in e.steps)
        return {
            "seed": self.config.seed,
            "tag": self.tag,
            "as_of": self.config.as_of.isoformat(),
            "providers": len(self.providers),
            "learners": len(self.learners),
            "enrolments": len(enrolments),
            "opted_in": sum(e.submission.wants_conversation_partner for e in enrolments),
            "volunteers": len(self.volunteers),
            "progress": dict(sorted(steps.items())),
            "by_authority": dict(
                sorted(Counter(e.submission.combined_authority.value for e in enrolments).items())
            ),
            "by_programme": dict(
                sorted(Counter(e.submission.programme.value for e in enrolments).items())
            ),
        }


# ---------------------------------------------------------------------------- sampling


class Draw:
    """Seeded sampling helpers (``random.Random`` keeps sequences stable across
    Python versions for a given seed)."""

    def __init__(self, seed: int | str) -> None:
        self.rng = random.Random(seed)

    def weighted(self, weights: Mapping[T, float]) -> T:
        items = list(weights.items())
        return self.rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def between(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        return self.rng.sample(list(items), min(k, len(items)))

    def beta(self, a: float, b: float) -> float:
        return self.rng.betavariate(a, b)


class _BoroughSampler:
    """Cumulative weights of a borough's joint, overall and for residents born abroad."""

    def __init__(self, profile: BoroughProfile) -> None:
        self.profile = profile
        joint = profile.joint
        self.cells = [
            (e, r, b)
            for i, e in enumerate(ETHNICITIES)
            for j, r in enumerate(RELIGIONS)
            for b in (False, True)
            if joint[i, j, int(b)] > 0
        ]
        weights = np.array(
            [joint[ETHNICITIES.index(e), RELIGIONS.index(r), int(b)] for e, r, b in self.cells]
        )
        self.cum_all = np.cumsum(weights).tolist()
        abroad = np.where([b for _, _, b in self.cells], weights, 0.0)
        self.cum_abroad = np.cumsum(abroad).tolist()

    def draw(self, draw: Draw, *, abroad_only: bool) -> tuple[Ethnicity, Religion, bool]:
        cum = self.cum_abroad if abroad_only else self.cum_all
        return draw.rng.choices(self.cells, cum_weights=cum)[0]


def _tag(seed: int) -> str:
    """Five characters that make this seed's learner refs and ids unique."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    digest = hashlib.sha256(f"commonground-simulator/{seed}".encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:5])


class Generator:
    def __init__(self, config: SimulationConfig, reference: ReferenceData) -> None:
        self.config = config
        self.ref = reference
        self.p = reference.programmes
        self.draw = Draw(config.seed)
        self.tag = _tag(config.seed)
        self.boroughs = {ca: reference.boroughs_of(ca) for ca in config.authorities}
        self.samplers = {b.code: _BoroughSampler(b) for bs in self.boroughs.values() for b in bs}
        self.authority_weights = {
            ca: float(sum(b.population for b in bs)) for ca, bs in self.boroughs.items()
        }
        self.borough_weights = {
            ca: {b.code: float(b.population) for b in bs} for ca, bs in self.boroughs.items()
        }
        self.stats: Counter[str] = Counter()

    # ----------------------------------------------------------------- people

    def _age_band(self, role: str) -> AgeBand:
        shares: list[float] = self.p["age_by_role"][role]
        bands = [AgeBand(b) for b in self.p["age_bands"]]
        return self.draw.weighted(dict(zip(bands, shares, strict=True)))

    def person(self, authority: CombinedAuthority, role: str, *, esol: bool = False) -> Person:
        la = self.draw.weighted(self.borough_weights[authority])
        sampler = self.samplers[la]
        for _attempt in range(50):
            ethnicity, religion, abroad = sampler.draw(self.draw, abroad_only=esol)
            if abroad:
                tables = self.ref.countries
                country = self.draw.weighted(tables.by_ethnicity[ethnicity])
                language = (
                    "en"
                    if ethnicity in tables.english_speaking
                    else self.draw.weighted(tables.languages[country])
                )
            else:
                country, language = "GB", "en"
            if not (esol and language == "en"):
                break
        else:  # pragma: no cover - the tables always hold non-English speakers
            self.stats["esol_redraw_exhausted"] += 1
        female = self.p["female_share"][role]
        return Person(
            local_authority=la,
            combined_authority=authority,
            sex=Sex.FEMALE if self.draw.chance(female) else Sex.MALE,
            age_band=self._age_band(role),
            ethnicity=ethnicity,
            religion=religion,
            born_abroad=abroad,
            country_of_birth=country,
            first_language=language,
            year_of_arrival_ago=self._years_since_arrival(esol) if abroad else None,
        )

    def _years_since_arrival(self, esol: bool) -> int:
        if esol:  # ESOL learners mostly arrived recently
            low, high = self.draw.weighted(
                {(0, 1): 0.25, (2, 3): 0.25, (4, 6): 0.2, (7, 10): 0.15, (11, 20): 0.15}
            )
            return self.draw.between(low, high)
        return self.draw.between(0, 40)

    def date_of_birth(self, band: AgeBand, on: date) -> date:
        low, high = self.p["age_band_ranges"][band.value]
        age = self.draw.between(low, high)
        try:
            anniversary = on.replace(year=on.year - age)
        except ValueError:  # 29 February
            anniversary = on.replace(year=on.year - age, day=28)
        return anniversary - timedelta(days=self.draw.between(0, 364))

    # -------------------------------------------------------------- providers

    def providers(self) -> tuple[Provider, ...]:
        per = int(self.p["providers"]["per_learners"])
        out: list[Provider] = []
        total_weight = sum(self.authority_weights.values())
        for ca in self.config.authorities:
            share = self.authority_weights[ca] / total_weight
            count = max(1, round(self.config.learners * share / per))
            for n in range(count):
                # The first provider of each authority is a college offering everything.
                kind = "college" if n == 0 else self.draw.weighted(self.p["providers"]["kinds"])
                la = self.draw.weighted(self.borough_weights[ca])
                index = len(out) + 1
                label = {
                    "college": "College",
                    "council_adult_learning": "Adult Learning Service",
                    "community_charity": "Community Learning Trust",
                }[kind]
                borough = self.ref.boroughs[la].name
                out.append(
                    Provider(
                        provider_id=f"sim-{self.tag}-p{index:04d}",
                        name=f"{borough} {label} {index}",
                        kind=kind,
                        combined_authority=ca,
                        local_authority=la,
                        programmes=tuple(
                            Programme(p) for p in self.p["providers"]["programmes"][kind]
                        ),
                    )
                )
        return tuple(out)

    def provider_for(
        self, providers: Sequence[Provider], person: Person, programme: Programme
    ) -> Provider:
        """A provider in the learner's combined authority offering the programme; one in
        the learner's own borough three times as likely."""
        options = {
            p: 3.0 if p.local_authority == person.local_authority else 1.0
            for p in providers
            if p.combined_authority is person.combined_authority and programme in p.programmes
        }
        return self.draw.weighted(options)  # never empty: each authority has a college

    # ---------------------------------------------------------------- learning

    def start_date(self) -> date:
        as_of = self.config.as_of
        months: dict[tuple[int, int], float] = {}
        year, month = as_of.year, as_of.month
        for _ in range(self.config.months):
            months[(year, month)] = float(self.p["start_month_weights"][str(month)])
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        year, month = self.draw.weighted(months)
        first = date(year, month, 1)
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return first + timedelta(days=self.draw.between(0, (min(last, as_of) - first).days))

    def level(self, programme: Programme) -> Level | None:
        value = self.draw.weighted(self.p["levels"][programme.value])
        return Level(value) if value else None

    def aim_ref(self, programme: Programme, level: Level | None) -> str:
        return f"Z{PROGRAMME_CODES[programme]}{LEVEL_CODES[level]}A"

    def submission(
        self,
        learner_ref: str,
        person: Person,
        programme: Programme,
        level: Level | None,
        start: date,
        *,
        opt_in: bool,
        dob: date,
        consent: Consent,
    ) -> EnrolmentSubmission:
        lo, hi = self.p["weeks"][programme.value]
        weeks = self.draw.between(lo, hi)
        hlo, hhi = self.p["hours_per_week"][programme.value]
        hours = weeks * self.draw.between(hlo, hhi)
        ethnicity = None if self.draw.chance(self.p["ethnicity_not_provided"]) else person.ethnicity
        religion = None if self.draw.chance(self.p["religion_not_provided"]) else person.religion
        arrival = None
        if person.year_of_arrival_ago is not None:
            arrival = max(dob.year, start.year - person.year_of_arrival_ago)
        availability: tuple[str, ...] = ()
        interests: tuple[str, ...] = ()
        preference = None
        if opt_in:
            availability = tuple(sorted(self.draw.sample(SLOTS, self.draw.between(2, 5))))
            interests = tuple(
                sorted(self.draw.sample(self.p["interests"], self.draw.between(1, 4)))
            )
            if person.sex is Sex.FEMALE and self.draw.chance(0.4):
                preference = Sex.FEMALE
        return EnrolmentSubmission(
            learner_ref=learner_ref,
            date_of_birth=dob,
            sex=person.sex,
            ethnicity=ethnicity,
            religion=religion,
            country_of_birth=person.country_of_birth,
            first_language=person.first_language,
            year_of_arrival=arrival,
            combined_authority=person.combined_authority,
            local_authority=person.local_authority,
            learning_aim_ref=self.aim_ref(programme, level),
            programme=programme,
            level=level,
            start_date=start,
            planned_end_date=start + timedelta(weeks=weeks),
            planned_hours=max(1, min(hours, 9999)),
            fund_model=FundModel(int(self.draw.weighted(self.p["fund_model"]))),
            consent=consent,
            wants_conversation_partner=opt_in,
            partner_gender_preference=preference,
            availability=availability,
            interests=interests,
        )

    def steps(self, s: EnrolmentSubmission) -> tuple[ProgressStep, ...]:
        """The enrolment's life: attendance every four weeks, an ESOL assessment, maybe a
        break, then completion (with an outcome, maybe known only later) or withdrawal.
        Steps dated after ``as_of`` have not happened yet and are left out."""
        p = self.p
        start, planned_end = s.start_date, s.planned_end_date
        length = (planned_end - start).days
        withdraws = self.draw.chance(p["withdrawal_rate"][s.programme.value])
        end = planned_end
        steps: list[ProgressStep] = []
        withdrawn_on: date | None = None
        if withdraws:
            lo = min(7, length)
            withdrawn_on = start + timedelta(days=self.draw.between(lo, max(lo, length - 7)))
            end = withdrawn_on
        on_break: tuple[date, date] | None = None
        if not withdraws and length >= 56 and self.draw.chance(p["break_rate"]):
            b = start + timedelta(days=self.draw.between(14, length - 28))
            back = b + timedelta(days=self.draw.between(14, 42))
            on_break = (b, back)
            end = planned_end + (back - b)
            steps.append(
                ProgressStep(
                    b,
                    "break",
                    {
                        "kind": "break",
                        "started_on": b.isoformat(),
                        "expected_return_on": back.isoformat(),
                    },
                )
            )
            steps.append(
                ProgressStep(back, "resume", {"kind": "resume", "resumed_on": back.isoformat()})
            )
        a, b_ = p["learner_attendance_beta"]["withdraws" if withdraws else "stays"]
        rate = self.draw.beta(a, b_)
        hlo, hhi = p["hours_per_week"][s.programme.value]
        per_week = max(1, (hlo + hhi) // 4)  # two-hour sessions
        period = start
        while period <= end:
            period_end = min(period + timedelta(days=27), end)
            skip = on_break is not None and on_break[0] <= period < on_break[1]
            if not skip:
                days = (period_end - period).days + 1
                planned = max(1, round(per_week * days / 7))
                attended = sum(self.draw.chance(rate) for _ in range(planned))
                steps.append(
                    ProgressStep(
                        period_end,
                        "attendance",
                        {
                            "kind": "attendance",
                            "period_start": period.isoformat(),
                            "period_end": period_end.isoformat(),
                            "sessions_planned": planned,
                            "sessions_attended": attended,
                            "hours_attended": float(attended * 2),
                        },
                    )
                )
            period = period_end + timedelta(days=1)
        level_now = s.level
        if s.programme is Programme.ESOL and self.draw.chance(p["esol_mid_course_assessment"]):
            assessed_on = start + timedelta(days=length // 2)
            if withdrawn_on is None or assessed_on < withdrawn_on:
                reached = _next_level(s.level) if self.draw.chance(0.35) else s.level
                steps.append(
                    ProgressStep(
                        assessed_on,
                        "assessment",
                        {
                            "kind": "assessment",
                            "assessed_on": assessed_on.isoformat(),
                            "level_reached": reached.value if reached else None,
                            "passed": reached != s.level,
                        },
                    )
                )
                level_now = reached
        if withdrawn_on is not None:
            reason = WithdrawalReason(int(self.draw.weighted(p["withdrawal_reasons"])))
            steps.append(
                ProgressStep(
                    withdrawn_on,
                    "withdrawal",
                    {
                        "kind": "withdrawal",
                        "withdrawn_on": withdrawn_on.isoformat(),
                        "reason": int(reason),
                    },
                )
            )
        else:
            outcome = Outcome(int(self.draw.weighted(p["outcome_on_completion"])))
            reached = self._level_reached(s, level_now, outcome)
            steps.append(
                ProgressStep(
                    end,
                    "completion",
                    {
                        "kind": "completion",
                        "completed_on": end.isoformat(),
                        "outcome": int(outcome),
                        "level_reached": reached.value if reached else None,
                    },
                )
            )
            if outcome is Outcome.NOT_YET_KNOWN:
                later = Outcome(int(self.draw.weighted(p["later_outcome"])))
                known = end + timedelta(days=self.draw.between(28, 70))
                reached_later = self._level_reached(s, level_now, later)
                steps.append(
                    ProgressStep(
                        known,
                        "outcome",
                        {
                            "kind": "outcome",
                            "recorded_on": known.isoformat(),
                            "outcome": int(later),
                            "level_reached": reached_later.value if reached_later else None,
                        },
                    )
                )
        steps.sort(key=lambda st: (st.on, STEP_ORDER[st.kind]))
        return tuple(st for st in steps if st.on <= self.config.as_of)

    def _level_reached(
        self, s: EnrolmentSubmission, level_now: Level | None, outcome: Outcome
    ) -> Level | None:
        if s.programme is not Programme.ESOL:
            return None
        if outcome is Outcome.ACHIEVED and self.draw.chance(self.p["esol_progression_if_achieved"]):
            return _next_level(level_now)
        return level_now

    # ---------------------------------------------------------------- assembly

    def learner(self, index: int, providers: Sequence[Provider]) -> Learner:
        ca = self.draw.weighted(self.authority_weights)
        programme = Programme(self.draw.weighted(self.p["programme_mix"]))
        esol = programme is Programme.ESOL
        person = self.person(ca, "esol" if esol else "other", esol=esol)
        learner_ref = f"{self.tag}{index:07d}"
        start = self.start_date()
        dob = self.date_of_birth(person.age_band, start)
        opt_in = self.draw.chance(self.p["opt_in"]["esol" if esol else "other"])
        consent = Consent(
            matching=opt_in and self.draw.chance(self.p["consent_matching_given_opt_in"]),
            research=self.draw.chance(self.p["consent_research"]),
        )
        provider = self.provider_for(providers, person, programme)
        level = self.level(programme)
        first = self.submission(
            learner_ref, person, programme, level, start, opt_in=opt_in, dob=dob, consent=consent
        )
        enrolments = [PlannedEnrolment(provider, first, self.steps(first))]
        if self.draw.chance(self.p["second_enrolment_rate"]):
            second = self._second(learner_ref, person, provider, enrolments[0], dob, consent)
            if second is not None:
                enrolments.append(second)
        return Learner(learner_ref, person, tuple(enrolments))

    def _second(
        self,
        learner_ref: str,
        person: Person,
        provider: Provider,
        first: PlannedEnrolment,
        dob: date,
        consent: Consent,
    ) -> PlannedEnrolment | None:
        """A follow-on ESOL course at the next level after an achieved one, or a second
        programme at the same provider alongside the first."""
        s = first.submission
        completion = next((st for st in first.steps if st.kind == "completion"), None)
        if (
            s.programme is Programme.ESOL
            and completion is not None
            and completion.body["outcome"] == int(Outcome.ACHIEVED)
            and s.level is not Level.LEVEL_2
        ):
            programme, level = Programme.ESOL, _next_level(s.level)
            start = completion.on + timedelta(days=self.draw.between(14, 60))
        else:
            others = [
                p
                for p in provider.programmes
                if p is not s.programme
                and (p is not Programme.ESOL or person.first_language != "en")
            ]
            if not others:
                return None
            programme = others[self.draw.between(0, len(others) - 1)]
            level = self.level(programme)
            start = s.start_date + timedelta(days=self.draw.between(0, 60))
        if start > self.config.as_of:
            return None
        submission = self.submission(
            learner_ref, person, programme, level, start, opt_in=False, dob=dob, consent=consent
        )
        return PlannedEnrolment(provider, submission, self.steps(submission))

    def volunteer(self, index: int) -> PlannedVolunteer:
        ca = self.draw.weighted(self.authority_weights)
        person = self.person(ca, "volunteer")
        v = self.p["volunteers"]
        as_of = self.config.as_of
        if self.draw.chance(v["dbs_lapsed"]):
            dbs = as_of - timedelta(days=self.draw.between(1, 200))
        else:
            dbs = as_of + timedelta(days=self.draw.between(60, 1000))
        languages = ["en"] if person.first_language == "en" else ["en", person.first_language]
        consent = self.draw.chance(v["consent_matching"])
        body: dict[str, Any] = {
            "external_ref": f"sim-{self.tag}-v{index:06d}",
            "local_authority": person.local_authority,
            "capacity": int(self.draw.weighted(v["capacity"])),
            "dbs_expires_on": dbs.isoformat(),
            "availability": sorted(self.draw.sample(SLOTS, self.draw.between(3, 8))),
            "languages": languages,
            "interests": sorted(self.draw.sample(self.p["interests"], self.draw.between(1, 5))),
            "gender": person.sex.value,
            "gender_preference": person.sex.value
            if self.draw.chance(v["same_gender_preference"])
            else None,
            "age_band": person.age_band.value,
            "consent_to_match_on_background": consent,
        }
        if consent:
            body["background"] = {
                "ethnicity": person.ethnicity.value,
                "religion": person.religion.value,
                "country_of_birth": person.country_of_birth,
            }
        return PlannedVolunteer(body["external_ref"], person, body)


def _next_level(level: Level | None) -> Level | None:
    if level is None or level not in ESOL_LEVELS:
        return level
    i = ESOL_LEVELS.index(level)
    return ESOL_LEVELS[min(i + 1, len(ESOL_LEVELS) - 1)]


def generate(config: SimulationConfig, reference: ReferenceData) -> Population:
    """The whole population for ``config``: deterministic in ``config`` alone."""
    gen = Generator(config, reference)
    providers = gen.providers()
    learners = tuple(gen.learner(i + 1, providers) for i in range(config.learners))
    volunteers = tuple(gen.volunteer(i + 1) for i in range(config.volunteer_count))
    return Population(
        config=config,
        tag=gen.tag,
        providers=providers,
        learners=learners,
        volunteers=volunteers,
        stats=dict(gen.stats),
    )
