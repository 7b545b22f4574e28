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
from datetime import date
from typing import Any

from pydantic import BaseModel, ValidationError

from services.enrolment.domain import (
    BreakProgress,
    CompletionProgress,
    FieldError,
    ResumeProgress,
    WithdrawalProgress,
    check_valid_submission,
    schema_errors,
)
from services.enrolment.ilr.aim_checks import AimRecord, check_aim
from services.enrolment.ilr.geography import local_authority_of
from services.enrolment.ilr.parser import RawLearner
from services.enrolment.ilr.plans import (
    DEFAULT_HOURS_PER_WEEK,
    AimTarget,
    Issue,
    IssueCollector,
    LearnerPlan,
    MappingContext,
    Step,
    ilr_date,
    ilr_int,
)
from shared.contracts.enrolment import EnrolmentSubmission, RejectionCode
from shared.contracts.ilr import (
    ETHNICITY,
    ETHNICITY_TO_ONS,
    SEX_CODES,
)
from shared.contracts.reference import (
    Outcome,
    WithdrawalReason,
)

__all__ = [
    "AimTarget",
    "Issue",
    "LearnerPlan",
    "MappingContext",
    "Step",
    "domain_rule",
    "plan_learner",
    "step_kind",
]

_LEARN_REF = re.compile(r"^[A-Za-z0-9 ]{1,12}$")

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


def _step_of(record: AimRecord) -> Step | None:
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
    out = IssueCollector(raw.index, learn_ref)
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
    records: list[AimRecord] = []
    out_of_scope = 0
    rejected = 0
    seqs: set[int] = set()
    for delivery in raw.deliveries:
        seq = ilr_int(delivery.get("AimSeqNumber"))
        if seq is not None and seq in seqs:
            out.add("R07", "AimSeqNumber must be unique within the learner", "AimSeqNumber", seq)
            rejected += 1
            continue
        if seq is not None:
            seqs.add(seq)
        checked = check_aim(delivery, raw, home_la, ctx, out)
        if checked == "out_of_scope":
            out_of_scope += 1
        elif checked is None:
            rejected += 1
        else:
            records.append(checked)
    if not records:
        return LearnerPlan(raw.index, learn_ref, (), tuple(out.issues), out_of_scope, rejected)
    base = _learner_fields(raw, learn_ref, ctx, out)
    if base is None:
        return LearnerPlan(
            raw.index, learn_ref, (), tuple(out.issues), out_of_scope, rejected + len(records)
        )
    targets: list[AimTarget] = []
    chains: dict[tuple[str, date], list[AimRecord]] = {}
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


def _learner_fields(
    raw: RawLearner, learn_ref: str, ctx: MappingContext, out: IssueCollector
) -> dict[str, Any] | None:
    """The learner's part of every submission (None, issues added, when a field needed
    for a funded learner is missing or not a valid code)."""
    learner_ok = True
    dob = ilr_date(raw.get("DateOfBirth"))
    if dob is None:
        learner_ok = False
        out.add("DateOfBirth_01", "DateOfBirth is required for a funded learner", "DateOfBirth")
    sex = raw.get("Sex")
    if sex not in SEX_CODES:
        learner_ok = False
        out.add("Sex_01", "Sex is not a valid code", "Sex")
    ethnicity_code = ilr_int(raw.get("Ethnicity"))
    if ethnicity_code is None or ethnicity_code not in ETHNICITY[ctx.year.code]:
        learner_ok = False
        out.add("Ethnicity_01", "Ethnicity is not a valid code", "Ethnicity")
    if not learner_ok:
        return None
    return {
        "learner_ref": learn_ref,
        "given_names": raw.get("GivenNames"),
        "family_name": raw.get("FamilyName"),
        "postcode": raw.get("Postcode"),
        "date_of_birth": dob,
        "sex": sex,
        "ethnicity": ETHNICITY_TO_ONS.get(ethnicity_code) if ethnicity_code else None,
    }


def _chain_steps(chain: Sequence[AimRecord], out: IssueCollector) -> list[Step] | None:
    """The lifecycle steps of an aim and its restarts (None when the chain is broken)."""
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
    return steps


def _planned_hours(first: AimRecord) -> int:
    """The file's planned hours, else DEFAULT_HOURS_PER_WEEK over the planned weeks."""
    weeks = (first.planned_end - first.start).days // 7 + 1
    return first.planned_hours or max(1, min(9999, weeks * DEFAULT_HOURS_PER_WEEK))


def _submission(
    first: AimRecord,
    aim_ref: str,
    base: dict[str, Any],
    ctx: MappingContext,
    out: IssueCollector,
) -> EnrolmentSubmission | None:
    """The submission the JSON API would have been sent for the aim's first record,
    checked by the same rules (None, issues added, when it breaks them)."""
    doc = {
        **base,
        "combined_authority": first.combined_authority,
        "local_authority": first.local_authority,
        "learning_aim_ref": aim_ref,
        "programme": first.info_programme,
        "level": first.info_level,
        "start_date": first.start,
        "planned_end_date": first.planned_end,
        "planned_hours": _planned_hours(first),
        "fund_model": first.fund_model,
    }
    try:
        submission = EnrolmentSubmission.model_validate(doc)
    except ValidationError as exc:
        errors: Sequence[FieldError] = schema_errors(exc)
    else:
        errors = check_valid_submission(submission, ctx.provider, ctx.today).errors
    for error in errors:
        rule, ilr_field = domain_rule(error)
        out.add(rule, error.message, ilr_field, first.aim_seq)
    return None if errors else submission


def _target(
    learn_ref: str,
    aim_ref: str,
    original_start: date,
    chain: Sequence[AimRecord],
    base: dict[str, Any],
    ctx: MappingContext,
    out: IssueCollector,
) -> AimTarget | None:
    steps = _chain_steps(chain, out)
    if steps is None:
        return None
    first, last = chain[0], chain[-1]
    submission: EnrolmentSubmission | None = None
    if not first.restart:  # a restart alone: the original came in an earlier file
        submission = _submission(first, aim_ref, base, ctx, out)
        if submission is None:
            return None
    outcome = Outcome(last.outcome) if last.comp_status == 2 and last.outcome else None
    return AimTarget(
        learn_ref=learn_ref,
        aim_seqs=tuple(r.aim_seq for r in chain),
        learning_aim_ref=aim_ref,
        start_date=original_start,
        submission=submission,
        steps=tuple(steps),
        outcome=outcome,
        outcome_on=(last.ach_date or last.act_end) if outcome is not None else None,
    )


def step_kind(step: BaseModel) -> str:
    return str(getattr(step, "kind", ""))
