"""Typed report responses: the published figures and their definitions in the OpenAPI
schema (docs/disclosure.md and the service README say the same at more length)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.reporting.domain.dimensions import BreakdownBy

Count = Annotated[
    int | str,
    Field(
        description="A count of enrolments, learners or matches. Rounded (published) mode, "
        "cell-key method: a whole number after perturbation and rounding to the rounding "
        "base, 0, or the marker '<T' (T = threshold) for a small count; the legacy method "
        "also uses '<5' and 'c' (withheld). Unrounded mode: the exact count."
    ),
]
Rate = Annotated[
    float | None,
    Field(
        description="A proportion in [0, 1] to 3 decimal places. Rounded mode: computed from "
        "the published numerator and denominator (never from unrounded figures) and null "
        "when either is not a published number or the denominator is below the threshold. "
        "Unrounded mode: from exact figures, null when the denominator is 0."
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersEcho(_Strict):
    combined_authorities: list[str] = Field(
        description="ONS codes of the combined authorities covered (the caller's scope "
        "narrowed by the filters)."
    )
    local_authority: str | None
    programme: str | None
    level: str | None = Field(description="A level, 'none', or null for all levels.")
    from_: str | None = Field(
        alias="from",
        description="First month (YYYY-MM) of start cohorts, inclusive. Omitted: no lower "
        "bound (from the earliest month with data).",
    )
    to: str | None = Field(
        description="Last month (YYYY-MM), inclusive. Omitted: no upper bound (up to the "
        "latest month with data)."
    )


class DisclosureInfo(_Strict):
    mode: Literal["rounded", "unrounded"]
    method: Literal["cell_key", "legacy", "none"]
    note: str
    threshold: int | None = None
    rounding_base: int | None = None
    max_noise: int | None = None
    suppressed: str | None = Field(default=None, description="The small-count marker.")
    secondary: str | None = Field(default=None, description="Legacy method only: 'c'.")


class Enrolments(_Strict):
    started: Count = Field(description="Enrolments accepted (start cohort in the range).")
    stayed: Count = Field(description="started - withdrawn.")
    withdrawn: Count = Field(description="Enrolments withdrawn (ILR completion status 3).")
    completed: Count = Field(description="Enrolments completed (ILR completion status 2).")
    continuing: Count = Field(
        description="Still learning and not on a break: stayed - completed - on_break."
    )
    on_break: Count = Field(
        description="On a break in learning (ILR completion status 6), not withdrawn."
    )
    achieved: Count = Field(description="Completed with outcome 1 (achieved).")
    completion_rate: Rate = Field(description="completed / (completed + withdrawn).")
    achievement_rate: Rate = Field(description="achieved / (completed + withdrawn).")
    retention_rate: Rate = Field(description="stayed / started.")


class WithdrawalReasonCount(_Strict):
    code: int = Field(description="ILR withdrawal reason code.")
    reason: str
    count: Count


class EsolBlock(_Strict):
    started: Count
    withdrawn: Count
    completed: Count
    achieved: Count
    esol_assessed: Count = Field(
        description="ESOL enrolments with a level reached (assessment, completion or a later "
        "outcome) on the ESOL scale."
    )
    esol_progressed: Count = Field(
        description="ESOL enrolments whose highest level reached is above the starting level."
    )
    completion_rate: Rate
    achievement_rate: Rate
    progression_rate: Rate = Field(description="esol_progressed / esol_assessed.")


class Esol(_Strict):
    all: EsolBlock = Field(description="All ESOL enrolments in scope.")
    matched: EsolBlock = Field(
        description="ESOL enrolments of learners with at least one confirmed befriending match."
    )
    unmatched: EsolBlock = Field(description="all - matched.")


class Matching(_Strict):
    proposed: Count = Field(description="Matches proposed in the months in range.")
    confirmed: Count = Field(description="Matches confirmed in the months in range.")
    cross_background: Count = Field(
        description="Confirmed matches whose volunteer and participant differ on at least "
        "one bridging dimension, both values known and shared with consent: ONS high-level "
        "ethnic group, religion (neither 'not stated'), country of birth or age band (as "
        "decided by the matching service, carried on MatchConfirmed)."
    )
    declined: Count
    ended: Count
    cross_background_share: Rate = Field(description="cross_background / confirmed.")
    median_wait_days: float | None = Field(
        description="Median, in days to 1 decimal, of confirmed_at - waited_since over the "
        "matches confirmed in range. Rounded mode: shown only beside a published confirmed "
        "count of at least the threshold."
    )


class WaitingList(_Strict):
    opted_in: Count = Field(description="Learners who opted in to befriending (by month).")
    waiting: Count = Field(description="Opted in and never had a confirmed match.")
    matched: Count = Field(description="Opted in and had a confirmed match.")


class SummaryReport(_Strict):
    """Headline figures. Programme and level filters do not apply to matching figures."""

    filters: FiltersEcho
    disclosure: DisclosureInfo
    enrolments: Enrolments
    withdrawal_reasons: list[WithdrawalReasonCount]
    esol: Esol
    matching: Matching
    waiting_list: WaitingList


class Column(_Strict):
    key: str
    label: str


class BreakdownRow(_Strict):
    code: str = Field(description="The category's code, or 'total'.")
    label: str
    values: dict[str, Count] = Field(
        description="One count per column key: started, stayed, withdrawn, completed, "
        "continuing, on_break, achieved, esol_assessed, esol_progressed; by local_authority "
        "and month also matches_confirmed and cross_background; by local_authority also "
        "waiting."
    )
    rates: dict[str, Rate] = Field(
        description="completion_rate, achievement_rate, esol_progression_rate; by "
        "local_authority and month also cross_background_share."
    )


class BreakdownReport(_Strict):
    """One row per category (every borough of the combined authorities in scope, every
    month of the range, the 5 ONS high-level ethnic groups and 'not stated', every
    programme or level) and a total row."""

    by: BreakdownBy
    filters: FiltersEcho
    disclosure: DisclosureInfo
    columns: list[Column]
    rate_columns: list[Column]
    rows: list[BreakdownRow]
    total: BreakdownRow


# ---------------------------------------------------------------------------------------
# QAR measures (issue 15, docs/qar.md).


class QarFiltersEcho(_Strict):
    combined_authorities: list[str]
    local_authority: str | None
    programme: str | None
    level: str | None
    years: list[str] = Field(description="Hybrid end years asked for (empty: all).")


class QarRow(_Strict):
    code: str = Field(description="Hybrid end year (e.g. 2025/26), category code, or 'total'.")
    label: str
    values: dict[str, Count] = Field(
        description="leavers (the QAR cohort: completed + withdrawn + breaks with no "
        "restart, by hybrid end year, withdrawals inside the funding qualifying period left "
        "out), completers, achievers (outcome 1), withdrawn, breaks_as_withdrawn, "
        "excluded_qualifying."
    )
    rates: dict[str, Rate] = Field(
        description="achievement_rate = achievers / leavers; retention_rate = completers / "
        "leavers; pass_rate = achievers / completers. Rounded mode: from published counts."
    )


class QarReport(_Strict):
    """Outcomes by the national Qualification Achievement Rates definitions (docs/qar.md):
    each aim in its hybrid end year (the later of its planned and actual end years)."""

    by: Literal["year", "local_authority", "programme", "level"]
    filters: QarFiltersEcho
    disclosure: DisclosureInfo
    definitions: str
    columns: list[Column]
    rate_columns: list[Column]
    rows: list[QarRow]
    total: QarRow
