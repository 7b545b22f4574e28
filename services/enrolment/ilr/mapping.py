"""ILR learner → enrolment targets: validation and mapping. Pure: no I/O, no clock.

One ``Learner`` of the file becomes the *targets* of its enrolments: for each aim that is
a Common Ground programme, the submission (what the JSON API would have been sent) and
the lifecycle the file states now, as the progress records that lead there from
acceptance (a break, a return, completion with its outcome, or withdrawal). What is
wrong is reported as :class:`Issue` s named after the national validation rules where
one exists (``WithdrawReason_04``: a withdrawal reason on an aim that is not withdrawn)
and ``CG_...`` for our own. A learner's errors never affect another learner; an aim's
errors reject that aim only, and a learner-level error (no date of birth) rejects the
learner's aims.

Breaks and returns follow the ILR: the aim on a break has CompStatus 6 and
``LearnActEndDate`` = the last day before the break; the return is a *new* aim record
with the restart indicator (``LearningDeliveryFAM`` RES 1) and ``OrigLearnStartDate`` =
the original start. Both records are one enrolment here (natural key: learner, aim,
original start date), so a restart emits ``LearningResumed`` rather than a new
enrolment.

Messages never echo submitted values (they may be personal data); the provider's own
``LearnRefNumber`` and ``AimSeqNumber`` locate an issue.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from services.enrolment.domain import (
    BreakProgress,
    CompletionProgress,
    FieldError,
    Provider,
    ResumeProgress,
    WithdrawalProgress,
    check_valid_submission,
    schema_errors,
)
from services.enrolment.ilr.aims import AimCatalogue
from services.enrolment.ilr.geography import local_authority_of
from services.enrolment.ilr.parser import RawDelivery, RawLearner
from shared.contracts.enrolment import EnrolmentSubmission, RejectionCode
from shared.contracts.ilr import (
    COMP_STATUS,
    ETHNICITY,
    ETHNICITY_TO_ONS,
    FUND_MODEL,
    OUTCOME,
    SEX_CODES,
    SOF_COMBINED_AUTHORITY,
    SOURCE_OF_FUNDING,
    WITHDRAW_REASON,
    IlrYear,
)
from shared.contracts.reference import (
    CombinedAuthority,
    FundModel,
    Outcome,
    WithdrawalReason,
    combined_authority_of,
)

Severity = Literal["error", "warning"]

# Fund models this platform takes (the contract's FundModel) and those of them whose
# aims must name their source of funding (LearnDelFAMType_01: funded aims need SOF).
IN_SCOPE_FUND_MODELS = frozenset(int(f) for f in FundModel)
FUNDED_MODELS = IN_SCOPE_FUND_MODELS - {int(FundModel.NON_FUNDED)}
_LEARN_REF = re.compile(r"^[A-Za-z0-9 ]{1,12}$")
# Planned hours when the file gives neither PHours nor PlanLearnHours: 3 a week.
DEFAULT_HOURS_PER_WEEK = 3


@dataclass(frozen=True)
class Issue:
    """Something wrong with a learner or an aim (``severity`` error: not imported)."""

    rule: str
    severity: Severity
    message: str
    field: str = ""
    learn_ref: str | None = None
    aim_seq: int | None = None
    learner_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "learner_index": self.learner_index,
            "learn_ref_number": self.learn_ref,
            "aim_seq_number": self.aim_seq,
            "rule": self.rule,
            "severity": self.severity,
            "field": self.field,
            "message": self.message,
        }


Step = BreakProgress | ResumeProgress | CompletionProgress | WithdrawalProgress


@dataclass(frozen=True)
class AimTarget:
    """One enrolment as the file states it: its natural key, the submission (None when
    only a restart record is in the file: the original was accepted from an earlier
    file), and the lifecycle steps from acceptance to now."""

    learn_ref: str
    aim_seqs: tuple[int, ...]
    learning_aim_ref: str
    start_date: date
    submission: EnrolmentSubmission | None
    steps: tuple[Step, ...]
    outcome: Outcome | None = None
    outcome_on: date | None = None


@dataclass(frozen=True)
class LearnerPlan:
    index: int
    learn_ref: str | None
    targets: tuple[AimTarget, ...] = ()
    issues: tuple[Issue, ...] = ()
    out_of_scope: int = 0
    rejected_aims: int = 0

    @property
    def has_errors(self) -> bool:
        return any(i.severity == "error" for i in self.issues)


@dataclass(frozen=True)
class MappingContext:
    year: IlrYear
    provider: Provider
    today: date
    catalogue: AimCatalogue = field(default_factory=AimCatalogue)


# ------------------------------------------------------------------------------ fields


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return int(value)


class _Collector:
    def __init__(self, index: int, learn_ref: str | None) -> None:
        self.index = index
        self.learn_ref = learn_ref
        self.issues: list[Issue] = []

    def add(
        self,
        rule: str,
        message: str,
        field_name: str = "",
        aim_seq: int | None = None,
        severity: Severity = "error",
    ) -> None:
        self.issues.append(
            Issue(rule, severity, message, field_name, self.learn_ref, aim_seq, self.index)
        )


# Domain rule codes (shared with the JSON API) → the names the report uses.
_DOMAIN_RULES: dict[tuple[RejectionCode, str], str] = {
    (RejectionCode.NOT_CONTRACTED, "/combined_authority"): "CG_NotContracted_01",
    (RejectionCode.LOCAL_AUTHORITY_MISMATCH, "/local_authority"): "CG_Postcode_02",
    (RejectionCode.DATES_OUT_OF_ORDER, "/planned_end_date"): "LearnPlanEndDate_02",
    (RejectionCode.DATES_OUT_OF_ORDER, "/date_of_birth"): "CG_DateOfBirth_01",
    (RejectionCode.AGE_OUT_OF_RANGE, "/date_of_birth"): "CG_DateOfBirth_02",
    (RejectionCode.DATE_OUT_OF_RANGE, "/start_date"): "CG_LearnStartDate_01",
    (RejectionCode.DATE_OUT_OF_RANGE, "/planned_end_date"): "CG_LearnPlanEndDate_01",
    (RejectionCode.FUND_MODEL_INVALID, "/fund_model"): "CG_FundModel_38",
}
_ILR_FIELD = {
    "/learner_ref": "LearnRefNumber",
    "/given_names": "GivenNames",
    "/family_name": "FamilyName",
    "/postcode": "Postcode",
    "/date_of_birth": "DateOfBirth",
    "/sex": "Sex",
    "/combined_authority": "LearningDeliveryFAM SOF",
    "/local_authority": "Postcode",
    "/start_date": "LearnStartDate",
    "/planned_end_date": "LearnPlanEndDate",
    "/planned_hours": "PHours",
    "/fund_model": "FundModel",
    "/learning_aim_ref": "LearnAimRef",
}


def domain_rule(error: FieldError) -> tuple[str, str]:
    """(rule name, ILR field) of a domain error found on a mapped submission."""
    ilr_field = _ILR_FIELD.get(error.pointer, error.field)
    rule = _DOMAIN_RULES.get((error.code, error.pointer))
    if rule is None:
        rule = (
            f"CG_{error.code.value}"
            if error.code is not RejectionCode.SCHEMA_INVALID
            else (f"Schema_{ilr_field.replace(' ', '_')}")
        )
    return rule, ilr_field


# ------------------------------------------------------------------------------ aims


@dataclass
class _Record:
    """An in-scope aim record that passed its own checks."""

    aim_seq: int
    aim_ref: str
    start: date
    planned_end: date
    fund_model: int
    comp_status: int
    act_end: date | None
    withdraw_reason: int | None
    outcome: int | None
    ach_date: date | None
    restart: bool
    original_start: date
    combined_authority: CombinedAuthority
    local_authority: str | None
    planned_hours: int | None
    info_programme: Any
    info_level: Any


class _AimIssues:
    """The errors of one aim (any error rejects it) added to its learner's issues."""

    def __init__(self, out: _Collector, seq: int | None) -> None:
        self.out = out
        self.seq = seq
        self.ok = True

    def bad(self, rule: str, message: str, field_name: str) -> None:
        self.ok = False
        self.out.add(rule, message, field_name, self.seq)

    def warn(self, rule: str, message: str, field_name: str) -> None:
        self.out.add(rule, message, field_name, self.seq, severity="warning")


@dataclass(frozen=True)
class _AimFields:
    """An aim's fields as parsed (None where missing or not a valid value)."""

    seq: int | None
    fund_model: int | None
    sof: int | None
    start: date | None
    planned_end: date | None
    comp: int | None
    act_end: date | None
    withdraw_reason: int | None
    outcome: int | None
    ach_date: date | None


def _source_of_funding(raw: RawDelivery) -> int | None:
    codes = [_int(c) for c in raw.fam("SOF")]
    return codes[0] if codes else None


def _out_of_scope(
    raw: RawDelivery,
    fund_model: int | None,
    sof: int | None,
    home_la: str | None,
    ctx: MappingContext,
) -> bool:
    """An aim of a programme we take that this platform still does not (not an error)."""
    year = ctx.year.code
    if (
        fund_model is not None
        and fund_model in FUND_MODEL[year]
        and (fund_model not in IN_SCOPE_FUND_MODELS)
    ):
        return True  # apprenticeships, 16-19, bootcamps
    if sof is not None and sof in SOURCE_OF_FUNDING[year] and sof not in SOF_COMBINED_AUTHORITY:
        return True  # funded by another body than the six combined authorities
    # Non-funded learning outside the six combined authorities.
    return (
        sof is None
        and fund_model == int(FundModel.NON_FUNDED)
        and (home_la is None and local_authority_of(raw.get("DelLocPostCode")) is None)
    )


def _parse_aim_fields(
    raw: RawDelivery, fund_model: int | None, ctx: MappingContext, issues: _AimIssues
) -> _AimFields:
    """Each field on its own: present where required, a date, a code of the year."""
    year = ctx.year.code
    seq = issues.seq
    if seq is None or seq < 1:
        issues.bad(
            "Schema_AimSeqNumber", "AimSeqNumber must be a whole number from 1", "AimSeqNumber"
        )
    if fund_model is None or fund_model not in FUND_MODEL[year]:
        issues.bad(
            "FundModel_01", f"FundModel is not a valid code for {ctx.year.label}", "FundModel"
        )
    start = _date(raw.get("LearnStartDate"))
    planned_end = _date(raw.get("LearnPlanEndDate"))
    if start is None:
        issues.bad(
            "Schema_LearnStartDate", "LearnStartDate must be a date (YYYY-MM-DD)", "LearnStartDate"
        )
    if planned_end is None:
        issues.bad(
            "Schema_LearnPlanEndDate",
            "LearnPlanEndDate must be a date (YYYY-MM-DD)",
            "LearnPlanEndDate",
        )
    comp = _int(raw.get("CompStatus"))
    if comp is None or comp not in COMP_STATUS[year]:
        issues.bad("CompStatus_01", "CompStatus is not a valid code", "CompStatus")
    act_end = _date(raw.get("LearnActEndDate"))
    if raw.get("LearnActEndDate") and act_end is None:
        issues.bad("Schema_LearnActEndDate", "LearnActEndDate must be a date", "LearnActEndDate")
    reason = _int(raw.get("WithdrawReason"))
    if raw.get("WithdrawReason") and (reason is None or reason not in WITHDRAW_REASON[year]):
        issues.bad("WithdrawReason_02", "WithdrawReason is not a valid code", "WithdrawReason")
        reason = None
    outcome = _int(raw.get("Outcome"))
    if raw.get("Outcome") and (outcome is None or outcome not in OUTCOME[year]):
        issues.bad("Outcome_01", "Outcome is not a valid code", "Outcome")
        outcome = None
    ach_date = _date(raw.get("AchDate"))
    if raw.get("AchDate") and ach_date is None:
        issues.bad("Schema_AchDate", "AchDate must be a date", "AchDate")
    return _AimFields(
        seq=seq,
        fund_model=fund_model,
        sof=_source_of_funding(raw),
        start=start,
        planned_end=planned_end,
        comp=comp,
        act_end=act_end,
        withdraw_reason=reason,
        outcome=outcome,
        ach_date=ach_date,
    )


def _check_completion(raw: RawDelivery, f: _AimFields, issues: _AimIssues) -> None:
    """CompStatus against the end date, withdrawal reason and outcome it implies."""
    comp, act_end, reason, outcome = f.comp, f.act_end, f.withdraw_reason, f.outcome
    if comp is None:
        return
    if comp == 1 and act_end is not None:
        issues.bad(
            "CompStatus_02",
            "a continuing aim (CompStatus 1) must not have a LearnActEndDate",
            "LearnActEndDate",
        )
    if comp != 1 and act_end is None and not raw.get("LearnActEndDate"):
        issues.bad(
            "CompStatus_03",
            "an aim that is not continuing needs a LearnActEndDate",
            "LearnActEndDate",
        )
    if comp == 3 and reason is None and not raw.get("WithdrawReason"):
        issues.bad(
            "WithdrawReason_03",
            "a withdrawn aim (CompStatus 3) needs a WithdrawReason",
            "WithdrawReason",
        )
    if comp in (1, 2, 6) and reason is not None:
        issues.bad(
            "WithdrawReason_04",
            "a WithdrawReason is only allowed on a withdrawn aim (CompStatus 3)",
            "WithdrawReason",
        )
    if comp != 1 and outcome is None and not raw.get("Outcome"):
        issues.bad("CompStatus_04", "an aim that is not continuing needs an Outcome", "Outcome")
    if comp == 1 and outcome is not None:
        issues.bad("CompStatus_05", "a continuing aim must not have an Outcome", "Outcome")
    if comp in (3, 6) and outcome in (1, 8):
        issues.bad(
            "CompStatus_06",
            "a withdrawn aim or one on a break cannot be achieved or awaiting an outcome",
            "Outcome",
        )
    if outcome == 8 and comp != 2:
        issues.bad("Outcome_09", "Outcome 8 (not yet known) needs CompStatus 2", "Outcome")


def _check_end_dates(f: _AimFields, today: date, issues: _AimIssues) -> None:
    """The actual end and achievement dates against the start, each other and today."""
    start, act_end, ach_date = f.start, f.act_end, f.ach_date
    if start is not None and act_end is not None and act_end < start:
        issues.bad(
            "LearnActEndDate_01",
            "LearnActEndDate must not be before LearnStartDate",
            "LearnActEndDate",
        )
    if act_end is not None and act_end > today:
        issues.bad(
            "LearnActEndDate_04", "LearnActEndDate must not be in the future", "LearnActEndDate"
        )
    if ach_date is None:
        return
    if act_end is None:
        issues.bad("AchDate_04", "an AchDate needs a LearnActEndDate", "AchDate")
    elif ach_date < act_end:
        issues.bad("AchDate_05", "AchDate must not be before LearnActEndDate", "AchDate")
    if start is not None and ach_date < start:
        issues.bad("AchDate_03", "AchDate must not be before LearnStartDate", "AchDate")
    if ach_date > today:
        issues.bad("CG_AchDate_01", "AchDate must not be in the future", "AchDate")


def _original_start(raw: RawDelivery, start: date | None, issues: _AimIssues) -> date | None:
    """The start of the enrolment this aim belongs to: its own, or a restart's original."""
    if "1" not in raw.fam("RES"):
        return start
    original_start = _date(raw.get("OrigLearnStartDate"))
    if original_start is None:
        issues.bad(
            "CG_OrigLearnStartDate_01",
            "a restarted aim (RES 1) needs its OrigLearnStartDate",
            "OrigLearnStartDate",
        )
    elif start is not None and original_start > start:
        issues.bad(
            "CG_OrigLearnStartDate_02",
            "OrigLearnStartDate must not be after LearnStartDate",
            "OrigLearnStartDate",
        )
    return original_start


def _place(
    raw: RawDelivery,
    f: _AimFields,
    home_la: str | None,
    ctx: MappingContext,
    issues: _AimIssues,
) -> tuple[CombinedAuthority | None, str | None]:
    """(combined authority, local authority): the funding body gives the combined
    authority, the home (or else the delivery) postcode the local authority."""
    sof = f.sof
    authority: CombinedAuthority | None = None
    if sof is not None:
        if sof not in SOURCE_OF_FUNDING[ctx.year.code]:
            issues.bad(
                "LearnDelFAMCode_SOF", "the SOF code is not a valid code", "LearningDeliveryFAM"
            )
        else:
            authority = SOF_COMBINED_AUTHORITY[sof]
    elif f.fund_model in FUNDED_MODELS:
        issues.bad(
            "LearnDelFAMType_01",
            "a funded aim must name its source of funding (LearningDeliveryFAM SOF)",
            "LearningDeliveryFAM",
        )
    delivery_la = local_authority_of(raw.get("DelLocPostCode"))
    local_authority = home_la
    if authority is None and sof is None and home_la is not None:
        authority = combined_authority_of(home_la)  # non-funded aim: where the learner lives
    if authority is not None and (
        home_la is None or combined_authority_of(home_la) is not authority
    ):
        if delivery_la is not None and combined_authority_of(delivery_la) is authority:
            local_authority = delivery_la
            issues.warn(
                "CG_Postcode_03",
                "the home postcode is not in a borough of the funding combined authority; "
                "the delivery location's borough is used",
                "DelLocPostCode",
            )
    # Only worth saying when nothing else is wrong with the aim (a bad code explains it).
    if local_authority is None and issues.ok:
        issues.bad(
            "CG_Postcode_01",
            "neither the home postcode nor the delivery postcode is in a borough of the "
            "six combined authorities",
            "Postcode",
        )
    if authority is None and issues.ok:
        issues.bad(
            "CG_LearnDelFAMType_SOF",
            "the aim's combined authority could not be established",
            "LearningDeliveryFAM",
        )
    return authority, local_authority


def _check_aim(
    raw: RawDelivery,
    learner: RawLearner,
    home_la: str | None,
    ctx: MappingContext,
    out: _Collector,
) -> _Record | Literal["out_of_scope"] | None:
    """One aim: out of scope, rejected (None, issues added) or a record."""
    aim_ref = (raw.get("LearnAimRef") or "").upper()
    info = ctx.catalogue.lookup(aim_ref) if aim_ref else None
    if info is None:
        return "out_of_scope"  # not a Common Ground programme (LARS aim of another kind)
    fund_model = _int(raw.get("FundModel"))
    if _out_of_scope(raw, fund_model, _source_of_funding(raw), home_la, ctx):
        return "out_of_scope"
    issues = _AimIssues(out, _int(raw.get("AimSeqNumber")))
    f = _parse_aim_fields(raw, fund_model, ctx, issues)
    _check_completion(raw, f, issues)
    _check_end_dates(f, ctx.today, issues)
    original_start = _original_start(raw, f.start, issues)
    authority, local_authority = _place(raw, f, home_la, ctx, issues)
    hours = _int(raw.get("PHours")) or _int(learner.get("PlanLearnHours"))
    if not issues.ok:
        return None
    assert f.start is not None and f.planned_end is not None and f.seq is not None
    assert f.fund_model is not None and f.comp is not None and original_start is not None
    assert authority is not None
    return _Record(
        aim_seq=f.seq,
        aim_ref=aim_ref,
        start=f.start,
        planned_end=f.planned_end,
        fund_model=f.fund_model,
        comp_status=f.comp,
        act_end=f.act_end,
        withdraw_reason=f.withdraw_reason,
        outcome=f.outcome,
        ach_date=f.ach_date,
        restart="1" in raw.fam("RES"),
        original_start=original_start,
        combined_authority=authority,
        local_authority=local_authority,
        planned_hours=hours,
        info_programme=info.programme,
        info_level=info.level,
    )


def _step_of(record: _Record) -> Step | None:
    if record.comp_status == 2 and record.act_end is not None:
        return CompletionProgress(
            kind="completion",
            completed_on=record.act_end,
            outcome=Outcome(record.outcome if record.outcome is not None else 8),
        )
    if record.comp_status == 3 and record.act_end is not None:
        return WithdrawalProgress(
            kind="withdrawal",
            withdrawn_on=record.act_end,
            reason=WithdrawalReason(record.withdraw_reason or 98),
        )
    if record.comp_status == 6 and record.act_end is not None:
        return BreakProgress(kind="break", started_on=record.act_end)
    return None


# --------------------------------------------------------------------------- learners


def plan_learner(raw: RawLearner, ctx: MappingContext) -> LearnerPlan:
    """Validate and map one learner (see the module docstring)."""
    ref_text = raw.get("LearnRefNumber")
    learn_ref = ref_text if ref_text and _LEARN_REF.fullmatch(ref_text) else None
    out = _Collector(raw.index, learn_ref)
    if learn_ref is None:
        out.add(
            "Schema_LearnRefNumber",
            "LearnRefNumber is required: 1-12 letters, digits or spaces",
            "LearnRefNumber",
        )
        return LearnerPlan(raw.index, None, (), tuple(out.issues), 0, len(raw.deliveries))
    if raw.too_many_aims:
        out.add("CG_Learner_01", "a learner may hold at most 200 aims", "LearningDelivery")
        return LearnerPlan(raw.index, learn_ref, (), tuple(out.issues), 0, len(raw.deliveries))
    # Learner-level fields: checked only if the learner has an aim we take.
    home_la = local_authority_of(raw.get("Postcode"))
    records: list[_Record] = []
    out_of_scope = 0
    rejected = 0
    seqs: set[int] = set()
    for delivery in raw.deliveries:
        seq = _int(delivery.get("AimSeqNumber"))
        if seq is not None and seq in seqs:
            out.add("R07", "AimSeqNumber must be unique within the learner", "AimSeqNumber", seq)
            rejected += 1
            continue
        if seq is not None:
            seqs.add(seq)
        checked = _check_aim(delivery, raw, home_la, ctx, out)
        if checked == "out_of_scope":
            out_of_scope += 1
        elif checked is None:
            rejected += 1
        else:
            records.append(checked)
    if not records:
        return LearnerPlan(raw.index, learn_ref, (), tuple(out.issues), out_of_scope, rejected)
    learner_ok = True
    dob = _date(raw.get("DateOfBirth"))
    if dob is None:
        learner_ok = False
        out.add("DateOfBirth_01", "DateOfBirth is required for a funded learner", "DateOfBirth")
    sex = raw.get("Sex")
    if sex not in SEX_CODES:
        learner_ok = False
        out.add("Sex_01", "Sex is not a valid code", "Sex")
    ethnicity_code = _int(raw.get("Ethnicity"))
    if ethnicity_code is None or ethnicity_code not in ETHNICITY[ctx.year.code]:
        learner_ok = False
        out.add("Ethnicity_01", "Ethnicity is not a valid code", "Ethnicity")
    if not learner_ok:
        return LearnerPlan(
            raw.index, learn_ref, (), tuple(out.issues), out_of_scope, rejected + len(records)
        )
    base = {
        "learner_ref": learn_ref,
        "given_names": raw.get("GivenNames"),
        "family_name": raw.get("FamilyName"),
        "postcode": raw.get("Postcode"),
        "date_of_birth": dob,
        "sex": sex,
        "ethnicity": ETHNICITY_TO_ONS.get(ethnicity_code) if ethnicity_code else None,
    }
    targets: list[AimTarget] = []
    chains: dict[tuple[str, date], list[_Record]] = {}
    for record in records:
        chains.setdefault((record.aim_ref, record.original_start), []).append(record)
    for (aim_ref, original_start), chain in chains.items():
        chain.sort(key=lambda r: (r.restart, r.start, r.aim_seq))
        target = _target(learn_ref, aim_ref, original_start, chain, base, ctx, out)
        if target is None:
            rejected += len(chain)
        else:
            targets.append(target)
    return LearnerPlan(
        raw.index, learn_ref, tuple(targets), tuple(out.issues), out_of_scope, rejected
    )


def _target(
    learn_ref: str,
    aim_ref: str,
    original_start: date,
    chain: Sequence[_Record],
    base: dict[str, Any],
    ctx: MappingContext,
    out: _Collector,
) -> AimTarget | None:
    seqs = tuple(r.aim_seq for r in chain)
    first = chain[0]
    steps: list[Step] = []
    for i, record in enumerate(chain):
        if i > 0:
            previous = chain[i - 1]
            if not record.restart or previous.comp_status != 6:
                out.add(
                    "CG_Restart_01",
                    "a restarted aim must follow the same aim on a break (CompStatus 6) and "
                    "carry the restart indicator (RES 1)",
                    "LearningDeliveryFAM",
                    record.aim_seq,
                )
                return None
            steps.append(ResumeProgress(kind="resume", resumed_on=record.start))
        step = _step_of(record)
        if step is not None:
            steps.append(step)
    last = chain[-1]
    submission: EnrolmentSubmission | None = None
    if not first.restart:
        doc = {
            **base,
            "combined_authority": first.combined_authority,
            "local_authority": first.local_authority,
            "learning_aim_ref": aim_ref,
            "programme": first.info_programme,
            "level": first.info_level,
            "start_date": first.start,
            "planned_end_date": first.planned_end,
            "planned_hours": first.planned_hours
            or max(
                1,
                min(
                    9999, ((first.planned_end - first.start).days // 7 + 1) * DEFAULT_HOURS_PER_WEEK
                ),
            ),
            "fund_model": first.fund_model,
        }
        try:
            submission = EnrolmentSubmission.model_validate(doc)
        except ValidationError as exc:
            for error in schema_errors(exc):
                rule, ilr_field = domain_rule(error)
                out.add(rule, error.message, ilr_field, first.aim_seq)
            return None
        checked = check_valid_submission(submission, ctx.provider, ctx.today)
        if checked.errors:
            for error in checked.errors:
                rule, ilr_field = domain_rule(error)
                out.add(rule, error.message, ilr_field, first.aim_seq)
            return None
    outcome = Outcome(last.outcome) if last.comp_status == 2 and last.outcome else None
    return AimTarget(
        learn_ref=learn_ref,
        aim_seqs=seqs,
        learning_aim_ref=aim_ref,
        start_date=original_start,
        submission=submission,
        steps=tuple(steps),
        outcome=outcome,
        outcome_on=(last.ach_date or last.act_end) if outcome is not None else None,
    )


def step_kind(step: BaseModel) -> str:
    return str(getattr(step, "kind", ""))
