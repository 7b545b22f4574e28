"""The rules of one enrolment submission, decided here for every intake channel (single
HTTP, batch HTTP, Kafka, ILR) so that they refuse exactly the same things for exactly
the same reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError

from services.enrolment.domain.errors import FieldError, schema_errors
from shared.contracts.enrolment import (
    EnrolmentSubmission,
    RejectionCode,
)
from shared.contracts.reference import (
    ADULT_SKILLS_FUND_FROM,
    ESOL_LEVELS,
    AgeBand,
    CombinedAuthority,
    FundModel,
    Level,
    Programme,
    combined_authority_of,
)


def _rule(code: RejectionCode, pointer: str, message: str) -> FieldError:
    return FieldError(code=code, pointer=pointer, message=message, type=code.value)


# --------------------------------------------------------------------------- age bands

MINIMUM_AGE = 16
MAXIMUM_AGE = 120

_AGE_BANDS: tuple[tuple[int, AgeBand], ...] = (
    (65, AgeBand.AGE_65_PLUS),
    (50, AgeBand.AGE_50_64),
    (35, AgeBand.AGE_35_49),
    (25, AgeBand.AGE_25_34),
    (19, AgeBand.AGE_19_24),
    (16, AgeBand.AGE_16_18),
)


def age_on(date_of_birth: date, on: date) -> int:
    before_birthday = (on.month, on.day) < (date_of_birth.month, date_of_birth.day)
    return on.year - date_of_birth.year - int(before_birthday)


def age_band(date_of_birth: date, on: date) -> AgeBand | None:
    """The band of the learner's age on ``on`` (the start date); None below 16."""
    age = age_on(date_of_birth, on)
    for lower, band in _AGE_BANDS:
        if age >= lower:
            return band
    return None


# ---------------------------------------------------------------------- level per programme


@dataclass(frozen=True)
class LevelRule:
    levels: tuple[Level, ...]
    required: bool


_ENTRY_1_TO_LEVEL_2 = (Level.ENTRY_1, Level.ENTRY_2, Level.ENTRY_3, Level.LEVEL_1, Level.LEVEL_2)

PROGRAMME_LEVELS: Mapping[Programme, LevelRule] = {
    Programme.ESOL: LevelRule(ESOL_LEVELS, required=True),
    Programme.FUNCTIONAL_MATHS: LevelRule(_ENTRY_1_TO_LEVEL_2, required=True),
    Programme.FUNCTIONAL_ENGLISH: LevelRule(_ENTRY_1_TO_LEVEL_2, required=True),
    Programme.DIGITAL: LevelRule((Level.ENTRY_3, Level.LEVEL_1), required=True),
    Programme.EMPLOYABILITY: LevelRule(_ENTRY_1_TO_LEVEL_2, required=False),
    Programme.VOCATIONAL: LevelRule((Level.LEVEL_1, Level.LEVEL_2, Level.LEVEL_3), required=True),
}


def level_error(programme: Programme, level: Level | None, pointer: str) -> FieldError | None:
    rule = PROGRAMME_LEVELS[programme]
    allowed = ", ".join(lv.value for lv in rule.levels)
    if level is None:
        if rule.required:
            return _rule(
                RejectionCode.LEVEL_INVALID_FOR_PROGRAMME,
                pointer,
                f"a level is required for {programme.value}; one of: {allowed}",
            )
        return None
    if level not in rule.levels:
        return _rule(
            RejectionCode.LEVEL_INVALID_FOR_PROGRAMME,
            pointer,
            f"this level is not offered for {programme.value}; use one of: {allowed}",
        )
    return None


# --------------------------------------------------------------------- submission rules


@dataclass(frozen=True)
class Provider:
    """The submitting provider as the domain sees it."""

    provider_id: str
    ukprn: str
    combined_authorities: frozenset[CombinedAuthority]


def contract_errors(submission: EnrolmentSubmission, provider: Provider) -> list[FieldError]:
    if submission.combined_authority in provider.combined_authorities:
        return []
    return [
        _rule(
            RejectionCode.NOT_CONTRACTED,
            "/combined_authority",
            "the provider is not contracted for this combined authority",
        )
    ]


# Programme years run 1 August - 31 July (the ILR academic year). A submission may start
# in the current programme year, the next one, or up to EARLIEST_START_YEARS_BACK years
# back (continuing learners carried over), and plan to end at most MAX_PLANNED_YEARS
# after it starts.
EARLIEST_START_YEARS_BACK = 5
MAX_PLANNED_YEARS = 5


def programme_year_start(day: date) -> date:
    return date(day.year if day.month >= 8 else day.year - 1, 8, 1)


def date_range_errors(start: date, planned_end: date, today: date) -> list[FieldError]:
    current = programme_year_start(today)
    earliest = current.replace(year=current.year - EARLIEST_START_YEARS_BACK)
    latest = date(current.year + 2, 7, 31)  # the end of the next programme year
    errors = []
    if not earliest <= start <= latest:
        errors.append(
            _rule(
                RejectionCode.DATE_OUT_OF_RANGE,
                "/start_date",
                f"start_date must be between {earliest.isoformat()} and {latest.isoformat()} "
                "(this programme year, the next, or a carried-over earlier one)",
            )
        )
    try:
        last_end = start.replace(year=start.year + MAX_PLANNED_YEARS)
    except ValueError:  # 29 February
        last_end = start.replace(year=start.year + MAX_PLANNED_YEARS, day=28)
    if planned_end > last_end:
        errors.append(
            _rule(
                RejectionCode.DATE_OUT_OF_RANGE,
                "/planned_end_date",
                f"planned_end_date must be within {MAX_PLANNED_YEARS} years of start_date",
            )
        )
    return errors


def rule_errors(submission: EnrolmentSubmission, today: date) -> list[FieldError]:
    """Cross-field rules of one submission (all of them, not only the first)."""
    s = submission
    errors: list[FieldError] = []
    ca_of_la = combined_authority_of(s.local_authority)
    if ca_of_la != s.combined_authority:
        errors.append(
            _rule(
                RejectionCode.LOCAL_AUTHORITY_MISMATCH,
                "/local_authority",
                "unknown local authority code"
                if ca_of_la is None
                else "the local authority is not in the stated combined authority",
            )
        )
    if s.planned_end_date < s.start_date:
        errors.append(
            _rule(
                RejectionCode.DATES_OUT_OF_ORDER,
                "/planned_end_date",
                "planned_end_date must be on or after start_date",
            )
        )
    errors.extend(date_range_errors(s.start_date, s.planned_end_date, today))
    if s.date_of_birth >= s.start_date or s.date_of_birth > today:
        errors.append(
            _rule(
                RejectionCode.DATES_OUT_OF_ORDER,
                "/date_of_birth",
                "date_of_birth must be before start_date and not in the future",
            )
        )
    else:
        age = age_on(s.date_of_birth, s.start_date)
        if not MINIMUM_AGE <= age <= MAXIMUM_AGE:
            errors.append(
                _rule(
                    RejectionCode.AGE_OUT_OF_RANGE,
                    "/date_of_birth",
                    f"the learner must be aged {MINIMUM_AGE}-{MAXIMUM_AGE} on start_date",
                )
            )
    level = level_error(s.programme, s.level, "/level")
    if level:
        errors.append(level)
    if s.fund_model is FundModel.ADULT_SKILLS_FUND and s.start_date < ADULT_SKILLS_FUND_FROM:
        errors.append(
            _rule(
                RejectionCode.FUND_MODEL_INVALID,
                "/fund_model",
                "fund_model 38 (Adult Skills Fund) is for aims starting on or after "
                f"{ADULT_SKILLS_FUND_FROM.isoformat()}; use 35 for earlier starts",
            )
        )
    if s.year_of_arrival is not None and not (
        s.date_of_birth.year <= s.year_of_arrival <= today.year
    ):
        errors.append(
            _rule(
                RejectionCode.YEAR_OF_ARRIVAL_INVALID,
                "/year_of_arrival",
                "year_of_arrival must be between the year of birth and this year",
            )
        )
    return errors


@dataclass(frozen=True)
class Checked:
    """Outcome of checking one raw submission: a valid submission, or its errors."""

    submission: EnrolmentSubmission | None
    errors: tuple[FieldError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.submission is not None and not self.errors

    @property
    def primary_code(self) -> RejectionCode | None:
        return self.errors[0].code if self.errors else None


def check_submission(raw: object, provider: Provider, today: date) -> Checked:
    """Validate one raw (JSON-decoded) submission exactly as every channel must."""
    if not isinstance(raw, Mapping):
        return Checked(
            None,
            (
                FieldError(
                    RejectionCode.SCHEMA_INVALID,
                    "",
                    "a submission must be a JSON object",
                    "model_type",
                ),
            ),
        )
    try:
        submission = EnrolmentSubmission.model_validate(raw)
    except ValidationError as exc:
        return Checked(None, tuple(schema_errors(exc)))
    return check_valid_submission(submission, provider, today)


def check_valid_submission(
    submission: EnrolmentSubmission, provider: Provider, today: date
) -> Checked:
    """The rules beyond the schema, for an already-parsed submission."""
    errors = contract_errors(submission, provider) + rule_errors(submission, today)
    return Checked(submission, tuple(errors))
