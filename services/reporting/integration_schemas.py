"""Typed responses of the integration reports (issue 16), with their definitions in the
OpenAPI schema (docs/integration.md says the same at more length)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.reporting.schemas import Count, DisclosureInfo, FiltersEcho, Rate

MaybeCount = Count | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------- lasting bridges


class BridgeRow(_Strict):
    local_authority: str = Field(description="ONS code of the borough, or 'total'.")
    label: str
    month: str = Field(description="Month the matches were confirmed (YYYY-MM).")
    confirmed: Count = Field(description="Befriending matches confirmed in the month.")
    cross_background: Count = Field(
        description="Of those, cross-background matches (decided by the matching service)."
    )
    observable_6w: bool = Field(
        description="Every match of the month has reached 42 days (otherwise the 6-week "
        "figures are null: not yet observable)."
    )
    active_6w: MaybeCount = Field(
        description="Cross-background matches still active 42 days after confirmation: not "
        "ended before that day and a meeting (MatchCheckInRecorded) in the 28 days up to it."
    )
    share_active_6w: Rate = Field(description="active_6w / cross_background (published).")
    observable_6m: bool
    active_6m: MaybeCount = Field(description="The same at 182 days (6 months).")
    share_active_6m: Rate = Field(description="active_6m / cross_background (published).")


class BridgesReport(_Strict):
    """Lasting bridges: the share of confirmed cross-background matches still active at 6
    weeks and 6 months, by borough (every borough in scope) and month of confirmation."""

    filters: FiltersEcho
    disclosure: DisclosureInfo
    as_of: str = Field(description="The day the report was made (marks reached by then).")
    marks: dict[str, int] = Field(
        description="Days after confirmation of each mark, and the activity window."
    )
    definitions: dict[str, str]
    rows: list[BridgeRow]
    totals: list[BridgeRow] = Field(description="All boroughs in scope, per month.")


# ------------------------------------------------------------------------- who is waiting


class WaitingRow(_Strict):
    code: str = Field(
        description="The group's code (age band, F/M, ethnic group, borough), "
        "'not_stated', or 'total'."
    )
    label: str
    opted_in: Count = Field(description="Participants who opted in (in the months in range).")
    waiting: Count = Field(description="Of those, still waiting for a first confirmed match.")
    matched: Count = Field(description="Of those, with a confirmed match.")
    unmatched_rate: Rate = Field(description="waiting / opted_in, from published figures.")
    median_wait_days: float | None = Field(
        description="Median days from waiting_since to the first confirmed match over the "
        "matched participants of the group, to 1 decimal. Rounded mode: shown only beside a "
        "published 'matched' of at least the threshold."
    )


class WaitingReport(_Strict):
    """Who is left waiting, by group. Ethnic group is the ONS high-level group from the
    learner's enrolment (equality monitoring: aggregate only, never used to match anyone
    without consent)."""

    by: Literal["age_band", "sex", "ethnic_group", "local_authority"]
    filters: FiltersEcho
    disclosure: DisclosureInfo
    rows: list[WaitingRow]
    total: WaitingRow


# ------------------------------------------------------------------------- indicators


class Framework(_Strict):
    name: str
    publisher: str
    edition: str


class QuarterInfo(_Strict):
    quarter: str = Field(description="Calendar quarter, e.g. '2025-Q2'.")
    label: str
    months: list[str] = Field(description="The months of the quarter inside the range.")


class IndicatorInfo(_Strict):
    key: str
    domain: str = Field(description="The framework domain the indicator informs.")
    domain_label: str
    name: str
    kind: Literal["count", "rate", "median_days"]
    definition: str
    source_events: list[str] = Field(description="The events it is computed from.")


class IndicatorValue(_Strict):
    value: float | int | str | None = Field(
        description="A count (published like every count), a rate in [0, 1] from the "
        "published numerator and denominator, or a median in days; null when withheld or "
        "not yet observable."
    )
    numerator: MaybeCount
    denominator: MaybeCount
    status: Literal["published", "withheld", "not_yet_observable"]


class IndicatorRow(_Strict):
    local_authority: str = Field(description="ONS code of the borough, or 'total'.")
    label: str
    quarter: str
    quarter_label: str
    months: list[str]
    values: dict[str, IndicatorValue] = Field(description="One entry per indicator key.")


class UnmeasuredDomain(_Strict):
    domain: str
    label: str
    group: str = Field(
        description="Markers and means, social connections, facilitators, foundation."
    )
    status: Literal["needs_data", "not_measurable"]
    reason: str
    data_needed: list[str] = Field(description="Source fields that would make it measurable.")


class IndicatorsReport(_Strict):
    """The Indicators of Integration domains the platform can compute from its own
    events, per borough and calendar quarter (every borough in scope), and those it
    cannot, listed as such."""

    framework: Framework
    filters: FiltersEcho
    disclosure: DisclosureInfo
    as_of: str
    quarters: list[QuarterInfo]
    indicators: list[IndicatorInfo]
    rows: list[IndicatorRow]
    totals: list[IndicatorRow] = Field(description="All boroughs in scope, per quarter.")
    unmeasured_domains: list[UnmeasuredDomain]


# ------------------------------------------------------------------------- ESOL comparison


class GroupRate(_Strict):
    n: Count = Field(description="Denominator (started, or leavers).")
    x: Count = Field(description="Numerator (stayed, or achieved).")
    rate: Rate
    ci_low: float | None = Field(description="95% Wilson interval, from the published x and n.")
    ci_high: float | None


class StratumCounts(_Strict):
    x: int
    n: int


class StratumOut(_Strict):
    local_authority: str
    level: str
    level_label: str
    quarter: str = Field(description="Start cohort (calendar quarter of the start date).")
    matched: StratumCounts
    unmatched: StratumCounts


class StratifiedDifference(_Strict):
    estimate: float | None = Field(
        description="matched - unmatched rate, weighted over strata (CMH weights)."
    )
    ci_low: float | None
    ci_high: float | None
    strata_used: int
    strata_with_both_groups: int | None = Field(
        description="Unrounded mode only: strata with learners in both groups."
    )
    matched_in_strata: int
    unmatched_in_strata: int


class ComparisonOutcomeOut(_Strict):
    outcome: Literal["retention", "achievement"]
    definition: str
    matched: GroupRate
    unmatched: GroupRate
    stratified_difference: StratifiedDifference
    strata: list[StratumOut] = Field(description="The strata that entered the difference.")


class EsolComparisonReport(_Strict):
    """ESOL retention and achievement of learners with a confirmed cross-background match
    against learners with no match, compared within strata of start cohort, level and
    borough. Not causal: see caveat."""

    filters: FiltersEcho
    disclosure: DisclosureInfo
    question: str
    groups: dict[str, str]
    method: str
    caveat: str
    outcomes: list[ComparisonOutcomeOut]
