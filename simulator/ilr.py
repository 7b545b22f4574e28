"""Realistic ILR XML files, seeded, of any size: the test fixtures and the simulator's
file-based provider.

Each learner's whole story is drawn from ``(seed, index)`` alone: who they are (names,
date of birth, sex, ILR ethnicity code, a home postcode in a borough of the provider's
combined authority), their aims (Common Ground aim codes, funding model 38 with the
combined authority's SOF code, planned dates) and how each aim goes (completion with an
outcome that may be known only later, withdrawal with a reason, some inside the
funding qualifying period, a break that ends in a restart or never does). A file
*as of* a day holds what an MIS would have exported that day for the collection year
(cumulative: the whole year so far), so consecutive months differ exactly by what
happened in between. Nothing is held in memory but one learner at a time.

:class:`FileTruth` records what each file says about each enrolment (status, outcome,
dates, borough, programme), so a test can compute the figures the reports must show.

    uv run python -m simulator.ilr --learners 2000 --ukprn 10012345 --out ilr.xml
    uv run python -m simulator.ilr --learners 2000 --ukprn 10012345 \\
        --upload http://127.0.0.1:8001 --key "$COMMONGROUND_DEMO_PROVIDER_KEY"
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, TypeVar
from xml.sax.saxutils import escape

from shared.contracts.ilr import (
    COMBINED_AUTHORITY_SOF,
    ILR_YEARS,
    ONS_TO_ETHNICITY,
    IlrYear,
)
from shared.contracts.postcodes import LAD_DISTRICTS
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Ethnicity,
    Level,
    Programme,
)

T = TypeVar("T")

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
PROGRAMMES: dict[Programme, tuple[float, tuple[Level | None, ...], tuple[int, int]]] = {
    # share, levels, planned weeks
    Programme.ESOL: (
        0.40,
        (Level.PRE_ENTRY, Level.ENTRY_1, Level.ENTRY_2, Level.ENTRY_3, Level.LEVEL_1),
        (10, 34),
    ),
    Programme.DIGITAL: (0.12, (Level.ENTRY_3, Level.LEVEL_1), (6, 14)),
    Programme.EMPLOYABILITY: (0.14, (None, Level.ENTRY_3, Level.LEVEL_1), (3, 10)),
    Programme.FUNCTIONAL_MATHS: (0.12, (Level.ENTRY_3, Level.LEVEL_1, Level.LEVEL_2), (8, 30)),
    Programme.FUNCTIONAL_ENGLISH: (0.12, (Level.ENTRY_3, Level.LEVEL_1, Level.LEVEL_2), (8, 30)),
    Programme.VOCATIONAL: (0.10, (Level.LEVEL_1, Level.LEVEL_2), (12, 36)),
}
ETHNICITY_WEIGHTS: dict[Ethnicity | None, float] = {
    Ethnicity.WHITE_BRITISH: 0.30,
    Ethnicity.WHITE_OTHER: 0.12,
    Ethnicity.ASIAN_PAKISTANI: 0.12,
    Ethnicity.ASIAN_BANGLADESHI: 0.05,
    Ethnicity.ASIAN_INDIAN: 0.05,
    Ethnicity.ASIAN_OTHER: 0.04,
    Ethnicity.BLACK_AFRICAN: 0.10,
    Ethnicity.BLACK_CARIBBEAN: 0.02,
    Ethnicity.OTHER_ARAB: 0.06,
    Ethnicity.MIXED_OTHER: 0.03,
    Ethnicity.ASIAN_CHINESE: 0.03,
    Ethnicity.OTHER_ANY: 0.05,
    None: 0.03,  # ILR 99, not provided
}
WITHDRAW_REASONS = {44: 0.30, 3: 0.15, 97: 0.14, 43: 0.10, 98: 0.10, 2: 0.06, 40: 0.05, 29: 0.10}
GIVEN = (
    "Amira",
    "Bilal",
    "Chen",
    "Dorota",
    "Emeka",
    "Fatima",
    "Grace",
    "Hassan",
    "Ines",
    "Jamal",
    "Keira",
    "Luca",
    "Maryam",
    "Nikolai",
    "Olu",
    "Priya",
    "Rahul",
    "Sara",
    "Tomasz",
    "Yusuf",
    "Zainab",
    "Aisha",
    "Ben",
    "Chloe",
    "Dylan",
)
FAMILY = (
    "Ahmed",
    "Begum",
    "Campbell",
    "Dlamini",
    "Evans",
    "Fernandes",
    "Ghani",
    "Hussain",
    "Iqbal",
    "Jones",
    "Kowalski",
    "Li",
    "Mensah",
    "Nowak",
    "Okafor",
    "Patel",
    "Quinn",
    "Rahman",
    "Smith",
    "Taylor",
    "Uddin",
    "Williams",
    "Yilmaz",
    "Zhang",
)
OUT_OF_SCOPE_AIM = "ZPROG001"  # an apprenticeship programme aim: not ours, FundModel 36
# Kinds of deliberately wrong learners (the national rule each breaks, or ours).
FAULTS = (
    "WithdrawReason_04",  # a withdrawal reason on a continuing aim
    "Ethnicity_01",  # an ethnicity code that does not exist
    "DateOfBirth_01",  # no date of birth
    "LearnDelFAMType_01",  # a funded aim without its source of funding
    "CompStatus_03",  # completed without an actual end date
)


def aim_code(programme: Programme, level: Level | None) -> str:
    return f"Z{PROGRAMME_CODES[programme]}{LEVEL_CODES[level]}A"


def _tag(seed: int) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    digest = hashlib.sha256(f"commonground-ilr/{seed}".encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:3])


def _uln(rng: random.Random) -> str:
    """A ULN with a valid check digit (ILR ULN_04)."""
    while True:
        digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(8)]
        remainder = sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if remainder != 0:
            return "".join(map(str, digits)) + str(10 - remainder)


def year_of(day: date) -> IlrYear | None:
    return next((y for y in ILR_YEARS.values() if y.first_day <= day <= y.last_day), None)


def collection_days(today: date) -> tuple[IlrYear, date, date]:
    """A supported collection year and two month-ends in it, both before ``today``
    (for tests: the first month's file and the next month's)."""
    second = today - timedelta(days=3)
    year = year_of(second)
    if year is None:
        year = max(ILR_YEARS.values(), key=lambda y: y.first_day)
        second = min(second, year.last_day)
    second = min(second, year.last_day)
    first = max(year.first_day + timedelta(days=40), second - timedelta(days=31))
    if first >= second:
        first = second - timedelta(days=10)
    return year, first, second


# ---------------------------------------------------------------------------- stories


@dataclass(frozen=True)
class AimStory:
    """One aim's whole life (some of it after any given file's day)."""

    seq: int
    programme: Programme
    level: Level | None
    start: date
    planned_end: date
    withdraw_on: date | None = None
    withdraw_reason: int | None = None
    break_on: date | None = None
    resume_on: date | None = None  # None with break_on: never came back
    complete_on: date | None = None
    outcome: int | None = None  # at completion (8: not yet known)
    outcome_known_on: date | None = None
    later_outcome: int | None = None
    out_of_scope: bool = False

    @property
    def aim_ref(self) -> str:
        return OUT_OF_SCOPE_AIM if self.out_of_scope else aim_code(self.programme, self.level)

    @property
    def key(self) -> tuple[str, date]:
        return (self.aim_ref, self.start)


@dataclass(frozen=True)
class LearnerStory:
    index: int
    learn_ref: str
    uln: str
    given: str
    family: str
    dob: date
    sex: str
    ethnicity: int
    postcode: str
    local_authority: str
    aims: tuple[AimStory, ...]
    fault: str | None = None


@dataclass(frozen=True)
class IlrFileSpec:
    ukprn: str
    learners: int
    as_of: date
    seed: int = 1
    authority: CombinedAuthority = CombinedAuthority.GREATER_MANCHESTER
    year: str | None = None  # default: the collection year of as_of
    drop: frozenset[int] = frozenset()  # learner indexes left out of this file
    faults: Mapping[int, str] = field(default_factory=dict)  # index → one of FAULTS
    duplicate_of: Mapping[int, int] = field(default_factory=dict)  # index → copy's LearnRef
    limit: int | None = None  # stop after this many learners in the file

    @property
    def ilr_year(self) -> IlrYear:
        if self.year is not None:
            return ILR_YEARS[self.year]
        year = year_of(self.as_of)
        if year is None:
            raise ValueError(f"no supported ILR collection year holds {self.as_of}")
        return year


def _pick(rng: random.Random, weights: Mapping[T, float]) -> T:
    items = list(weights)
    return rng.choices(items, weights=[weights[i] for i in items])[0]


def story(spec: IlrFileSpec, index: int) -> LearnerStory:
    """Learner ``index``'s whole story: a function of the seed and index only."""
    rng = random.Random(f"{spec.seed}:{index}")
    year = spec.ilr_year
    las = sorted(LOCAL_AUTHORITIES[spec.authority])
    la = rng.choice(las)
    district = rng.choice(LAD_DISTRICTS[la])
    postcode = f"{district} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}" + (
        rng.choice("ABDEFGHJLNPQRSTUWXYZ")
    )
    ethnicity = _pick(rng, ETHNICITY_WEIGHTS)
    code = 99 if ethnicity is None else ONS_TO_ETHNICITY[ethnicity]
    age = rng.randint(19, 64)
    dob = date(year.first_day.year - age, rng.randint(1, 12), rng.randint(1, 28))
    aims: list[AimStory] = []
    count = 1 if rng.random() < 0.7 else 2
    seq = 1
    for n in range(count):
        programme = _pick(rng, {p: v[0] for p, v in PROGRAMMES.items()})
        _, levels, (w_lo, w_hi) = PROGRAMMES[programme]
        level = rng.choice(levels)
        carried = n == 0 and rng.random() < 0.15
        if carried:  # started last year, continuing into this one
            start = year.first_day - timedelta(days=rng.randint(20, 150))
        else:
            # Over the whole year (not up to as_of: a story must not depend on the day of
            # the file, or consecutive months would tell different stories).
            span = (year.last_day - year.first_day).days - 30
            start = year.first_day + timedelta(days=rng.randint(0, span))
        if any((a.programme, a.level, a.start) == (programme, level, start) for a in aims):
            start += timedelta(days=1)  # two aims of a learner never share a natural key
        weeks = rng.randint(w_lo, w_hi)
        planned_end = start + timedelta(weeks=weeks)
        if carried and planned_end <= year.first_day + timedelta(days=14):
            planned_end = year.first_day + timedelta(days=rng.randint(15, 120))
        length = (planned_end - start).days
        earliest = max(start, year.first_day) if carried else start
        fate = rng.random()
        kwargs: dict[str, object] = {}
        if fate < 0.14:
            early = rng.random() < 0.3 and not carried
            low = (earliest - start).days + 3
            high = 40 if early else max(low, length - 5)
            when = start + timedelta(days=rng.randint(low, max(low, high)))
            kwargs.update(withdraw_on=when, withdraw_reason=_pick(rng, WITHDRAW_REASONS))
        elif fate < 0.20 and length >= 56 and not carried:
            brk = start + timedelta(days=rng.randint(14, length - 28))
            kwargs.update(break_on=brk)
            if rng.random() < 0.7:
                back = brk + timedelta(days=rng.randint(14, 42))
                kwargs.update(
                    resume_on=back,
                    complete_on=planned_end + (back - brk),
                    outcome=1 if rng.random() < 0.8 else 3,
                )
        else:
            finish = planned_end + timedelta(days=rng.randint(-7, 7))
            finish = max(finish, earliest + timedelta(days=1))
            outcome = _pick(rng, {1: 0.78, 2: 0.07, 3: 0.08, 8: 0.07})
            kwargs.update(complete_on=finish, outcome=outcome)
            if outcome == 8:
                kwargs.update(
                    outcome_known_on=finish + timedelta(days=rng.randint(20, 60)),
                    later_outcome=1 if rng.random() < 0.8 else 3,
                )
        aims.append(AimStory(seq, programme, level, start, planned_end, **kwargs))  # type: ignore[arg-type]
        seq += 2 if "break_on" in kwargs else 1
    if rng.random() < 0.05:  # some learners also have an aim that is not ours
        start = year.first_day + timedelta(days=rng.randint(0, 60))
        aims.append(
            AimStory(
                seq,
                Programme.VOCATIONAL,
                None,
                start,
                start + timedelta(days=540),
                out_of_scope=True,
            )
        )
    learn_ref = f"{_tag(spec.seed)}{index:07d}"
    if index in spec.duplicate_of:
        learn_ref = f"{_tag(spec.seed)}{spec.duplicate_of[index]:07d}"
    return LearnerStory(
        index=index,
        learn_ref=learn_ref,
        uln=_uln(rng),
        given=rng.choice(GIVEN),
        family=rng.choice(FAMILY),
        dob=dob,
        sex="F" if rng.random() < 0.62 else "M",
        ethnicity=code,
        postcode=postcode,
        local_authority=la,
        aims=tuple(aims),
        fault=spec.faults.get(index),
    )


# ------------------------------------------------------------------------- as of a day


@dataclass(frozen=True)
class AimRecord:
    """One LearningDelivery as the file of a given day shows it."""

    seq: int
    aim_ref: str
    start: date
    planned_end: date
    fund_model: int
    comp_status: int
    act_end: date | None = None
    withdraw_reason: int | None = None
    outcome: int | None = None
    ach_date: date | None = None
    restart_of: date | None = None


@dataclass(frozen=True)
class ExpectedEnrolment:
    """What a file says about one enrolment (for the figures a test expects)."""

    learn_ref: str
    aim_ref: str
    local_authority: str
    programme: Programme
    level: Level | None
    start: date
    planned_end: date
    status: str  # continuing, break, completed, withdrawn
    ended_on: date | None
    outcome: int | None
    withdraw_reason: int | None


def records_as_of(aim: AimStory, day: date, year: IlrYear) -> list[AimRecord]:
    """The aim's records in the file of ``day`` (none before it starts or when it
    ended before the collection year)."""
    if aim.start > day:
        return []
    fund_model = 36 if aim.out_of_scope else 38
    if aim.out_of_scope:
        return [AimRecord(aim.seq, aim.aim_ref, aim.start, aim.planned_end, fund_model, 1)]
    base = AimRecord(aim.seq, aim.aim_ref, aim.start, aim.planned_end, fund_model, 1)
    if aim.withdraw_on is not None and aim.withdraw_on <= day:
        return [_ended(base, 3, aim.withdraw_on, outcome=3, reason=aim.withdraw_reason)]
    if aim.break_on is not None and aim.break_on <= day:
        records = [_ended(base, 6, aim.break_on, outcome=3)]
        if aim.resume_on is not None and aim.resume_on <= day:
            shift = aim.resume_on - aim.break_on
            restart = AimRecord(
                aim.seq + 1,
                aim.aim_ref,
                aim.resume_on,
                aim.planned_end + shift,
                fund_model,
                1,
                restart_of=aim.start,
            )
            records.append(_completion(restart, aim, day))
        return records
    return [_completion(base, aim, day)]


def _ended(
    record: AimRecord, status: int, on: date, *, outcome: int, reason: int | None = None
) -> AimRecord:
    return AimRecord(
        record.seq,
        record.aim_ref,
        record.start,
        record.planned_end,
        record.fund_model,
        status,
        act_end=on,
        withdraw_reason=reason,
        outcome=outcome,
        restart_of=record.restart_of,
    )


def _completion(record: AimRecord, aim: AimStory, day: date) -> AimRecord:
    if aim.complete_on is None or aim.complete_on > day or aim.outcome is None:
        return record
    outcome, ach = aim.outcome, aim.complete_on if aim.outcome == 1 else None
    if outcome == 8 and aim.outcome_known_on is not None and aim.outcome_known_on <= day:
        outcome = aim.later_outcome or 3
        ach = aim.outcome_known_on if outcome == 1 else None
    done = _ended(record, 2, aim.complete_on, outcome=outcome)
    return AimRecord(**{**done.__dict__, "ach_date": ach})


def expected_of(
    learner: LearnerStory, aim: AimStory, records: list[AimRecord]
) -> ExpectedEnrolment:
    last = records[-1]
    status = {1: "continuing", 2: "completed", 3: "withdrawn", 6: "break"}[last.comp_status]
    return ExpectedEnrolment(
        learn_ref=learner.learn_ref,
        aim_ref=aim.aim_ref,
        local_authority=learner.local_authority,
        programme=aim.programme,
        level=aim.level,
        start=aim.start,
        planned_end=aim.planned_end,
        status=status,
        ended_on=last.act_end,
        outcome=last.outcome if last.comp_status == 2 else None,
        withdraw_reason=last.withdraw_reason,
    )


# ------------------------------------------------------------------------------ XML


@dataclass
class FileTruth:
    """What a written file holds: the enrolments it states (faulty learners' aims are
    left out: the service refuses them) and which learners are faulty or dropped."""

    spec: IlrFileSpec
    learners_written: int = 0
    enrolments: list[ExpectedEnrolment] = field(default_factory=list)
    faulty: dict[int, str] = field(default_factory=dict)
    out_of_scope_aims: int = 0


def _el(name: str, value: object | None) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, date) else str(value)
    return f"<{name}>{escape(text)}</{name}>"


def _fam(kind: str, code: object) -> str:
    return (
        f"<LearningDeliveryFAM><LearnDelFAMType>{kind}</LearnDelFAMType>"
        f"<LearnDelFAMCode>{code}</LearnDelFAMCode></LearningDeliveryFAM>"
    )


def _delivery(record: AimRecord, sof: int, fault: str | None) -> str:
    parts = [
        _el("LearnAimRef", record.aim_ref),
        _el("AimType", 4 if record.fund_model != 36 else 1),
        _el("AimSeqNumber", record.seq),
        _el("LearnStartDate", record.start),
        _el("OrigLearnStartDate", record.restart_of),
        _el("LearnPlanEndDate", record.planned_end),
        _el("FundModel", record.fund_model),
        _el("DelLocPostCode", None),
        _el("CompStatus", record.comp_status),
        _el("LearnActEndDate", None if fault == "CompStatus_03" else record.act_end),
        _el(
            "WithdrawReason",
            97
            if fault == "WithdrawReason_04" and record.comp_status == 1
            else record.withdraw_reason,
        ),
        _el("Outcome", record.outcome),
        _el("AchDate", record.ach_date),
    ]
    if record.fund_model != 36:
        if fault != "LearnDelFAMType_01":
            parts.append(_fam("SOF", sof))
        parts.append(_fam("FFI", 1))
    else:
        parts.append(_fam("SOF", 105))
    if record.restart_of is not None:
        parts.append(_fam("RES", 1))
    return "<LearningDelivery>" + "".join(parts) + "</LearningDelivery>"


def learner_xml(learner: LearnerStory, records: list[AimRecord], sof: int) -> str:
    fault = learner.fault
    parts = [
        _el("LearnRefNumber", learner.learn_ref),
        _el("ULN", learner.uln),
        _el("FamilyName", learner.family),
        _el("GivenNames", learner.given),
        _el("DateOfBirth", None if fault == "DateOfBirth_01" else learner.dob),
        _el("Ethnicity", 12 if fault == "Ethnicity_01" else learner.ethnicity),
        _el("Sex", learner.sex),
        _el("LLDDHealthProb", 2),
        _el("Postcode", learner.postcode),
    ]
    parts += [_delivery(r, sof, fault) for r in records]
    return "<Learner>" + "".join(parts) + "</Learner>\n"


def header_xml(spec: IlrFileSpec) -> str:
    year = spec.ilr_year
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Message xmlns="{year.namespace}">\n'
        "<Header><CollectionDetails><Collection>ILR</Collection>"
        f"<Year>{year.code}</Year><FilePreparationDate>{spec.as_of.isoformat()}"
        "</FilePreparationDate></CollectionDetails><Source><ProtectiveMarking>"
        "OFFICIAL-SENSITIVE-Personal</ProtectiveMarking>"
        f"<UKPRN>{spec.ukprn}</UKPRN><SoftwareSupplier>Common Ground simulator"
        "</SoftwareSupplier><SoftwarePackage>simulator.ilr</SoftwarePackage>"
        f"<Release>1</Release><SerialNo>{spec.as_of.month:02d}</SerialNo>"
        f"<DateTime>{spec.as_of.isoformat()}T18:00:00</DateTime></Source></Header>\n"
        f"<LearningProvider><UKPRN>{spec.ukprn}</UKPRN></LearningProvider>\n"
    )


def _fault_applies(fault: str, chains: list[tuple[AimStory, list[AimRecord]]]) -> bool:
    """A fault is written only where it rejects exactly the learner's one in-scope aim,
    so that what the file states stays simple to predict."""
    ours = [(a, c) for a, c in chains if not a.out_of_scope]
    if len(ours) != 1 or len(ours[0][1]) != 1:
        return False
    status = ours[0][1][0].comp_status
    if fault == "WithdrawReason_04":
        return status == 1
    if fault == "CompStatus_03":
        return status != 1
    return True


def iter_learners(
    spec: IlrFileSpec,
) -> Iterator[tuple[LearnerStory, list[tuple[AimStory, list[AimRecord]]]]]:
    """Each learner in the file with its aims' records (learners with none left out)."""
    year = spec.ilr_year
    written = 0
    for index in range(spec.learners):
        if spec.limit is not None and written >= spec.limit:
            return
        if index in spec.drop:
            continue
        learner = story(spec, index)
        chains: list[tuple[AimStory, list[AimRecord]]] = []
        for aim in learner.aims:
            records = records_as_of(aim, spec.as_of, year)
            last_end = records[-1].act_end if records else None
            if records and (last_end is None or last_end >= year.first_day):
                chains.append((aim, records))
        if not chains:
            continue
        if learner.fault is not None and not _fault_applies(learner.fault, chains):
            learner = LearnerStory(**{**learner.__dict__, "fault": None})
        written += 1
        yield learner, chains


def write_ilr(spec: IlrFileSpec, out: IO[bytes]) -> FileTruth:
    """Write the file of ``spec`` to ``out`` (streaming) and return what it states."""
    truth = FileTruth(spec)
    sof = COMBINED_AUTHORITY_SOF[spec.authority]
    out.write(header_xml(spec).encode())
    for learner, chains in iter_learners(spec):
        records = [r for _, chain in chains for r in chain]
        out.write(learner_xml(learner, records, sof).encode())
        truth.learners_written += 1
        if learner.fault is not None:
            truth.faulty[learner.index] = learner.fault
        elif learner.index in spec.duplicate_of:
            truth.faulty[learner.index] = "R06"
        for aim, chain in chains:
            if aim.out_of_scope:
                truth.out_of_scope_aims += 1
            elif learner.index not in truth.faulty:
                truth.enrolments.append(expected_of(learner, aim, chain))
    out.write(b"</Message>\n")
    return truth


def ilr_bytes(spec: IlrFileSpec) -> tuple[bytes, FileTruth]:
    buffer = io.BytesIO()
    truth = write_ilr(spec, buffer)
    return buffer.getvalue(), truth


# ------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.ilr", description="Write (and optionally upload) an ILR file."
    )
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--ukprn", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None)
    parser.add_argument(
        "--authority",
        choices=[ca.name.lower().replace("_", "-") for ca in CombinedAuthority],
        default="greater-manchester",
    )
    parser.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    parser.add_argument("--upload", default=None, help="enrolment service URL to upload to")
    parser.add_argument("--key", default=None, help="the provider's API key (with --upload)")
    args = parser.parse_args(argv)
    as_of = args.as_of or collection_days(date.today())[2]
    spec = IlrFileSpec(
        ukprn=args.ukprn,
        learners=args.learners,
        as_of=as_of,
        seed=args.seed,
        authority=CombinedAuthority[args.authority.upper().replace("-", "_")],
    )
    if args.upload:
        import httpx

        path = args.out or Path(f"ilr-{spec.ukprn}-{as_of.isoformat()}.xml")
        with path.open("wb") as handle:
            truth = write_ilr(spec, handle)
        with path.open("rb") as handle:
            response = httpx.post(
                f"{args.upload.rstrip('/')}/v1/ilr/submissions",
                params={"wait": 60},
                content=handle,
                headers={"Authorization": f"Bearer {args.key}", "Content-Type": "application/xml"},
                timeout=120,
            )
        sys.stdout.write(f"{response.status_code} {response.text[:2000]}\n")
        sys.stdout.write(f"{truth.learners_written} learners, {len(truth.enrolments)} enrolments\n")
        return 0 if response.status_code < 300 else 1
    if args.out:
        with args.out.open("wb") as handle:
            truth = write_ilr(spec, handle)
        sys.stdout.write(
            f"{truth.learners_written} learners, {len(truth.enrolments)} enrolments: {args.out}\n"
        )
    else:
        write_ilr(spec, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
