"""The checks of one ILR aim (``LearningDelivery``) on its own: in scope or not, each
field, CompStatus against the dates, withdrawal reason and outcome it implies, restarts,
and where the learning is funded and happens. Pure: no I/O, no clock.

Messages never echo submitted values (they may be personal data).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from services.enrolment.ilr.geography import local_authority_of
from services.enrolment.ilr.parser import RawDelivery, RawLearner
from services.enrolment.ilr.plans import (
    FUNDED_MODELS,
    IN_SCOPE_FUND_MODELS,
    IssueCollector,
    MappingContext,
    ilr_date,
    ilr_int,
)
from shared.contracts.ilr import (
    COMP_STATUS,
    FUND_MODEL,
    OUTCOME,
    SOF_COMBINED_AUTHORITY,
    SOURCE_OF_FUNDING,
    WITHDRAW_REASON,
)
from shared.contracts.reference import (
    CombinedAuthority,
    FundModel,
    combined_authority_of,
)

# ------------------------------------------------------------------------------ aims


@dataclass
class AimRecord:
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

    def __init__(self, out: IssueCollector, seq: int | None) -> None:
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
    codes = [ilr_int(c) for c in raw.fam("SOF")]
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
    start = ilr_date(raw.get("LearnStartDate"))
    planned_end = ilr_date(raw.get("LearnPlanEndDate"))
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
    comp = ilr_int(raw.get("CompStatus"))
    if comp is None or comp not in COMP_STATUS[year]:
        issues.bad("CompStatus_01", "CompStatus is not a valid code", "CompStatus")
    act_end = ilr_date(raw.get("LearnActEndDate"))
    if raw.get("LearnActEndDate") and act_end is None:
        issues.bad("Schema_LearnActEndDate", "LearnActEndDate must be a date", "LearnActEndDate")
    reason = ilr_int(raw.get("WithdrawReason"))
    if raw.get("WithdrawReason") and (reason is None or reason not in WITHDRAW_REASON[year]):
        issues.bad("WithdrawReason_02", "WithdrawReason is not a valid code", "WithdrawReason")
        reason = None
    outcome = ilr_int(raw.get("Outcome"))
    if raw.get("Outcome") and (outcome is None or outcome not in OUTCOME[year]):
        issues.bad("Outcome_01", "Outcome is not a valid code", "Outcome")
        outcome = None
    ach_date = ilr_date(raw.get("AchDate"))
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
    original_start = ilr_date(raw.get("OrigLearnStartDate"))
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


def check_aim(
    raw: RawDelivery,
    learner: RawLearner,
    home_la: str | None,
    ctx: MappingContext,
    out: IssueCollector,
) -> AimRecord | Literal["out_of_scope"] | None:
    """One aim: out of scope, rejected (None, issues added) or a record."""
    aim_ref = (raw.get("LearnAimRef") or "").upper()
    info = ctx.catalogue.lookup(aim_ref) if aim_ref else None
    if info is None:
        return "out_of_scope"  # not a Common Ground programme (LARS aim of another kind)
    fund_model = ilr_int(raw.get("FundModel"))
    if _out_of_scope(raw, fund_model, _source_of_funding(raw), home_la, ctx):
        return "out_of_scope"
    issues = _AimIssues(out, ilr_int(raw.get("AimSeqNumber")))
    f = _parse_aim_fields(raw, fund_model, ctx, issues)
    _check_completion(raw, f, issues)
    _check_end_dates(f, ctx.today, issues)
    original_start = _original_start(raw, f.start, issues)
    authority, local_authority = _place(raw, f, home_la, ctx, issues)
    hours = ilr_int(raw.get("PHours")) or ilr_int(learner.get("PlanLearnHours"))
    if not issues.ok:
        return None
    assert f.start is not None and f.planned_end is not None and f.seq is not None
    assert f.fund_model is not None and f.comp is not None and original_start is not None
    assert authority is not None
    return AimRecord(
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
