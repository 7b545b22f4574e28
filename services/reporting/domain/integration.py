"""Integration reports (issue 16): what the Office's programmes do for integration, per
borough, in the language of the Home Office *Indicators of Integration* framework (third
edition, 2019). Pure functions: the repository sums, this module decides what is
published, with the same disclosure control as every other report
(:mod:`services.reporting.domain.disclosure`): every count is a :class:`Cell` with its
record-key sum, published (perturbed, small counts withheld, rounded) in rounded mode and
exact in the analyst's unrounded mode; every rate is computed from the *published*
numerator and denominator; a median is shown only beside a published count of at least
the threshold.

Four reports:

* :func:`build_bridges`: lasting bridges, the share of confirmed cross-background matches
  still active 6 weeks and 6 months after confirmation, by borough and month of
  confirmation (definitions in :mod:`services.reporting.domain.integration_facts`);
* :func:`build_waiting`: who is left waiting, by age band, sex, ethnic group or borough:
  unmatched rate and median wait to a first match;
* :func:`build_indicators`: the framework domains the platform can honestly compute from
  its events, per borough and quarter, each indicator with its definition, source events
  and domain, and the domains it cannot measure listed as such;
* :func:`build_esol_comparison`: ESOL retention and achievement of learners with and
  without a confirmed match, stratified on start cohort (quarter), level and borough,
  with Wilson intervals and a stratified difference; associations, not effects.
"""

from __future__ import annotations

import calendar
import csv
import io
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from services.reporting.domain.dimensions import (
    ETHNIC_GROUP_LABELS,
    LEVEL_LABELS,
    Filters,
    boroughs,
    month_range,
)
from services.reporting.domain.disclosure import (
    Cell,
    CellId,
    DisclosureMethod,
    Displayed,
    Published,
    publish,
)
from services.reporting.domain.integration_facts import (
    ACTIVITY_WINDOW_DAYS,
    BRIDGE_MARKS,
)
from services.reporting.domain.projection import NOT_STATED, Counts
from services.reporting.domain.reports import cell, disclosure_note
from shared.contracts.reference import (
    ESOL_LEVELS,
    AgeBand,
    Programme,
    Sex,
)

TOTAL = "total"
Z95 = 1.959963984540054
RATE_DIGITS = 3

# ---------------------------------------------------------------------------------------
# Calendar helpers


def quarter_of(month: str) -> str:
    """``"2025-04"`` → ``"2025-Q2"`` (calendar quarters)."""
    return f"{month[:4]}-Q{(int(month[5:7]) - 1) // 3 + 1}"


def quarter_label(quarter: str) -> str:
    year, q = quarter.split("-Q")
    first = (int(q) - 1) * 3 + 1
    names = [calendar.month_abbr[m] for m in (first, first + 2)]
    return f"{year} Q{q} ({names[0]}-{names[1]})"


def last_day(month: str) -> date:
    year, mon = int(month[:4]), int(month[5:7])
    return date(year, mon, calendar.monthrange(year, mon)[1])


def observable(last_month: str, mark_days: int, today: date) -> bool:
    """Every match confirmed in a cohort ending with ``last_month`` has reached the mark."""
    return last_day(last_month) + timedelta(days=mark_days) <= today


def _sum(cells: Iterable[Cell]) -> Cell:
    return sum(cells, Cell(0))


def _rate(p: Published, num: CellId, den: CellId) -> float | None:
    return p.rate(num, (den,))


# ---------------------------------------------------------------------------------------
# 1. Lasting bridges


BRIDGE_DEFINITIONS: Mapping[str, str] = {
    "confirmed": "Befriending matches confirmed in the month.",
    "cross_background": "Of those, cross-background matches: volunteer and participant differ "
    "on at least one bridging dimension shared with consent (as decided by the matching "
    "service, carried on MatchConfirmed).",
    "active_6w": "Cross-background matches still active 6 weeks (42 days) after confirmation: "
    f"not ended before that day, and a meeting recorded in the {ACTIVITY_WINDOW_DAYS} days up "
    "to it (MatchCheckInRecorded). Null until every match of the month has reached the mark.",
    "active_6m": "The same at 6 months (182 days).",
    "share_active_6w": "active_6w / cross_background, from published figures.",
    "share_active_6m": "active_6m / cross_background, from published figures.",
}


def build_bridges(
    sums: Mapping[tuple[str, str], Counts],
    filters: Filters,
    *,
    today: date,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """Lasting bridges by borough and month of confirmation (``sums`` keyed by
    (local authority, month) from the ``bridges`` aggregate), with a total row per month
    over every borough in scope."""
    months = month_range(filters, (m for _, m in sums))
    las = boroughs(filters)
    counters = ("confirmed", "cross_confirmed", "cross_active_6w", "cross_active_6m")
    values: dict[CellId, Cell] = {}
    for month in months:
        for name in counters:
            per = [cell(sums.get((la, month), {}), name) for la, _ in las]
            for (la, _), c in zip(las, per, strict=True):
                values[(la, month, name)] = c
            values[(TOTAL, month, name)] = _sum(per)
    p = publish(values, [], control)

    def row(la: str, label: str, month: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "local_authority": la,
            "label": label,
            "month": month,
            "confirmed": p.display((la, month, "confirmed")),
            "cross_background": p.display((la, month, "cross_confirmed")),
        }
        for mark, days in BRIDGE_MARKS.items():
            seen = observable(month, days, today)
            name = f"cross_active_{mark}"
            out[f"observable_{mark}"] = seen
            out[f"active_{mark}"] = p.display((la, month, name)) if seen else None
            out[f"share_active_{mark}"] = (
                _rate(p, (la, month, name), (la, month, "cross_confirmed")) if seen else None
            )
        return out

    return {
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "as_of": today.isoformat(),
        "marks": {**BRIDGE_MARKS, "activity_window_days": ACTIVITY_WINDOW_DAYS},
        "definitions": dict(BRIDGE_DEFINITIONS),
        "rows": [row(la, label, m) for m in months for la, label in las],
        "totals": [row(TOTAL, "All boroughs in scope", m) for m in months],
    }


# ---------------------------------------------------------------------------------------
# 2. Who is left waiting


WaitingBy = Literal["age_band", "sex", "ethnic_group", "local_authority"]
WAITING_BY: tuple[WaitingBy, ...] = ("age_band", "sex", "ethnic_group", "local_authority")
SEX_LABELS: Mapping[str, str] = {Sex.FEMALE: "Female", Sex.MALE: "Male", NOT_STATED: "Not stated"}


def waiting_categories(by: WaitingBy, filters: Filters) -> list[tuple[str, str]]:
    if by == "age_band":
        return [(a.value, a.value) for a in AgeBand] + [(NOT_STATED, "Not stated")]
    if by == "sex":
        return list(SEX_LABELS.items())
    if by == "ethnic_group":
        return list(ETHNIC_GROUP_LABELS.items())
    return boroughs(filters)


def build_waiting(
    by: WaitingBy,
    sums: Mapping[str, Counts],
    waits: Mapping[str, Sequence[float]],
    filters: Filters,
    *,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """Opted in, still waiting, matched, unmatched rate and median wait per group."""
    rows = waiting_categories(by, filters)
    names = ("opted_in", "waiting", "matched")
    values: dict[CellId, Cell] = {}
    for code, _ in rows:
        for name in names:
            values[(code, name)] = cell(sums.get(code, {}), name)
    for name in names:
        values[(TOTAL, name)] = _sum(values[(code, name)] for code, _ in rows)
    all_waits = [w for code, _ in rows for w in waits.get(code, ())]
    p = publish(values, [], control)

    def row(code: str, label: str, days: Sequence[float]) -> dict[str, Any]:
        median = None
        if days and p.shows_median((code, "matched"), len(days)):
            median = round(statistics.median(days), 1)
        return {
            "code": code,
            "label": label,
            **{name: p.display((code, name)) for name in names},
            "unmatched_rate": _rate(p, (code, "waiting"), (code, "opted_in")),
            "median_wait_days": median,
        }

    return {
        "by": by,
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "rows": [row(code, label, waits.get(code, ())) for code, label in rows],
        "total": row(TOTAL, "Total", all_waits),
    }


# ---------------------------------------------------------------------------------------
# 3. Indicators of Integration per borough and quarter

FRAMEWORK = {
    "name": "Indicators of Integration framework",
    "publisher": "Home Office",
    "edition": "third edition, 2019",
}

ADULT_SKILLS = (
    Programme.FUNCTIONAL_MATHS.value,
    Programme.FUNCTIONAL_ENGLISH.value,
    Programme.VOCATIONAL.value,
    Programme.EMPLOYABILITY.value,
)
PROGRAMME_GROUPS: Mapping[str, tuple[str, ...]] = {
    "esol": (Programme.ESOL.value,),
    "adult_skills": ADULT_SKILLS,
    "digital": (Programme.DIGITAL.value,),
}

DOMAIN_LABELS: Mapping[str, str] = {
    "language_and_communication": "Language and communication",
    "education": "Education",
    "digital_skills": "Digital skills",
    "social_bridges": "Social bridges",
    "work": "Work",
}
OUTCOME_EVENTS = ("EnrolmentCompleted", "EnrolmentWithdrawn", "OutcomeRecorded")


@dataclass(frozen=True)
class Indicator:
    key: str
    domain: str
    name: str
    kind: Literal["count", "rate", "median_days"]
    definition: str
    source_events: tuple[str, ...]
    numerator: str | None = None
    denominator: str | None = None


INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "esol_starts",
        "language_and_communication",
        "ESOL enrolments started",
        "count",
        "ESOL enrolments whose learning started in the quarter (start cohort).",
        ("EnrolmentAccepted",),
        numerator="esol.started",
    ),
    Indicator(
        "esol_achievement_rate",
        "language_and_communication",
        "ESOL achievement rate",
        "rate",
        "Of the quarter's ESOL starts that have left (completed or withdrawn), the share who "
        "completed and achieved (ILR outcome 1): achieved / leavers.",
        ("EnrolmentAccepted", *OUTCOME_EVENTS),
        numerator="esol.achieved",
        denominator="esol.leavers",
    ),
    Indicator(
        "esol_progression_rate",
        "language_and_communication",
        "ESOL progression between levels",
        "rate",
        "Of the quarter's ESOL starts with a level recorded since (assessment, completion "
        "or later outcome), the share whose highest level is above their starting level "
        "(Pre-entry, Entry 1-3, Level 1-2).",
        ("EnrolmentAccepted", "AssessmentRecorded", "EnrolmentCompleted", "OutcomeRecorded"),
        numerator="esol.esol_progressed",
        denominator="esol.esol_assessed",
    ),
    Indicator(
        "esol_median_days_to_progress",
        "language_and_communication",
        "ESOL median time to progress",
        "median_days",
        "Median days from the start date to the first record of a level above the starting "
        "level, over the quarter's ESOL starts that progressed. Shown only beside a "
        "published count of progressed learners of at least the threshold.",
        ("EnrolmentAccepted", "AssessmentRecorded", "EnrolmentCompleted", "OutcomeRecorded"),
        numerator="esol.esol_progressed",
    ),
    Indicator(
        "adult_skills_starts",
        "education",
        "Adult-skills enrolments started",
        "count",
        "Functional maths, functional English, vocational and employability enrolments "
        "whose learning started in the quarter.",
        ("EnrolmentAccepted",),
        numerator="adult_skills.started",
    ),
    Indicator(
        "adult_skills_achievement_rate",
        "education",
        "Adult-skills achievement rate",
        "rate",
        "Achieved / leavers over the quarter's adult-skills starts (as for ESOL).",
        ("EnrolmentAccepted", *OUTCOME_EVENTS),
        numerator="adult_skills.achieved",
        denominator="adult_skills.leavers",
    ),
    Indicator(
        "digital_starts",
        "digital_skills",
        "Digital skills enrolments started",
        "count",
        "Digital skills programme enrolments whose learning started in the quarter.",
        ("EnrolmentAccepted",),
        numerator="digital.started",
    ),
    Indicator(
        "digital_achievement_rate",
        "digital_skills",
        "Digital skills achievement rate",
        "rate",
        "Achieved / leavers over the quarter's digital skills starts.",
        ("EnrolmentAccepted", *OUTCOME_EVENTS),
        numerator="digital.achieved",
        denominator="digital.leavers",
    ),
    Indicator(
        "bridges_confirmed",
        "social_bridges",
        "Cross-background befriending matches",
        "count",
        "Befriending matches confirmed in the quarter whose volunteer and participant differ "
        "on at least one bridging dimension shared with consent.",
        ("MatchConfirmed",),
        numerator="bridges.cross_confirmed",
    ),
    Indicator(
        "bridges_share",
        "social_bridges",
        "Share of matches that bridge backgrounds",
        "rate",
        "Cross-background matches / matches confirmed in the quarter.",
        ("MatchConfirmed",),
        numerator="bridges.cross_confirmed",
        denominator="bridges.confirmed",
    ),
    Indicator(
        "bridges_active_6w_share",
        "social_bridges",
        "Bridges still active at 6 weeks",
        "rate",
        "Of the quarter's cross-background matches, the share still active 42 days after "
        f"confirmation (not ended, a meeting in the {ACTIVITY_WINDOW_DAYS} days up to it). "
        "Not yet observable until every match of the quarter has reached 42 days.",
        ("MatchConfirmed", "MatchCheckInRecorded", "MatchEnded"),
        numerator="bridges.cross_active_6w",
        denominator="bridges.cross_confirmed",
    ),
    Indicator(
        "bridges_active_6m_share",
        "social_bridges",
        "Bridges still active at 6 months",
        "rate",
        "The same at 182 days after confirmation.",
        ("MatchConfirmed", "MatchCheckInRecorded", "MatchEnded"),
        numerator="bridges.cross_active_6m",
        denominator="bridges.cross_confirmed",
    ),
)

ILR_FIELDS_FOR_WORK = (
    "LearnerEmploymentStatus.EmpStat (employment status, e.g. 10 employed, 11 not employed "
    "and seeking work, 12 not employed and not seeking) with DateEmpStatApp",
    "EmploymentStatusMonitoring ESMType/ESMCode: SEI self-employed, EII hours employed, LOU "
    "length unemployed, BSI benefit status",
    "LearnerDestinationandProgression DPOutcome: OutType (EMP paid employment, EDU, "
    "VOL...), OutCode, OutStartDate, OutCollDate",
)

UNMEASURED_DOMAINS: tuple[dict[str, Any], ...] = (
    {
        "domain": "work",
        "label": "Work",
        "group": "markers and means",
        "status": "needs_data",
        "reason": "No event carries employment status or destinations. The ILR has them; "
        "intake would have to accept and publish these fields (as events, with the same "
        "pseudonymisation) for work indicators per borough and quarter.",
        "data_needed": list(ILR_FIELDS_FOR_WORK),
    },
    *(
        {
            "domain": key,
            "label": label,
            "group": group,
            "status": "not_measurable",
            "reason": reason,
            "data_needed": [],
        }
        for key, label, group, reason in (
            (
                "housing",
                "Housing",
                "markers and means",
                "No housing data is collected; the postcode stays in the enrolment service.",
            ),
            (
                "health_and_social_care",
                "Health and social care",
                "markers and means",
                "Only ILR withdrawal reasons mention health; that is not a health measure.",
            ),
            ("leisure", "Leisure", "markers and means", "No leisure activity is recorded."),
            (
                "social_bonds",
                "Social bonds",
                "social connections",
                "Connections within one's own community are not recorded.",
            ),
            (
                "social_links",
                "Social links",
                "social connections",
                "Links with institutions beyond these programmes are not recorded.",
            ),
            (
                "culture",
                "Culture",
                "facilitators",
                "No cultural knowledge or participation is recorded.",
            ),
            (
                "safety",
                "Safety",
                "facilitators",
                "No experience of safety or harassment is recorded.",
            ),
            (
                "stability",
                "Stability",
                "facilitators",
                "No residential or personal stability is recorded (year of arrival alone "
                "is not stability).",
            ),
            (
                "rights_and_responsibilities",
                "Rights and responsibilities",
                "foundation",
                "No data on rights, entitlements or citizenship.",
            ),
        )
    ),
)


@dataclass(frozen=True)
class IndicatorInputs:
    outcomes: Mapping[tuple[str, str, str], Counts]
    """(local authority, programme, month) → outcome counters."""
    bridges: Mapping[tuple[str, str], Counts]
    """(local authority, month) → bridge counters."""
    progress_days: Sequence[tuple[str, str, float]] = field(default_factory=tuple)
    """(local authority, start month, days to first progression) per ESOL enrolment."""


def _outcome_cells(counts: Counts) -> dict[str, Cell]:
    completed, withdrawn = cell(counts, "completed"), cell(counts, "withdrawn")
    return {
        "started": cell(counts, "started"),
        "achieved": cell(counts, "achieved"),
        "leavers": completed + withdrawn,
        "esol_assessed": cell(counts, "esol_assessed"),
        "esol_progressed": cell(counts, "esol_progressed"),
    }


def build_indicators(
    inputs: IndicatorInputs,
    filters: Filters,
    *,
    today: date,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """Every indicator per borough and quarter (and for all boroughs in scope)."""
    present = [m for _, _, m in inputs.outcomes] + [m for _, m in inputs.bridges]
    months = month_range(filters, present)
    quarters: dict[str, list[str]] = {}
    for m in months:
        quarters.setdefault(quarter_of(m), []).append(m)
    las = boroughs(filters)
    values: dict[CellId, Cell] = {}
    progress: dict[tuple[str, str], list[float]] = {}
    for la, month, days in inputs.progress_days:
        if month in months:
            progress.setdefault((la, quarter_of(month)), []).append(days)
            progress.setdefault((TOTAL, quarter_of(month)), []).append(days)
    for q, q_months in quarters.items():
        for name, programmes in PROGRAMME_GROUPS.items():
            per_la = {
                la: _outcome_cells(
                    _add_counts(
                        inputs.outcomes.get((la, prog, m), {})
                        for prog in programmes
                        for m in q_months
                    )
                )
                for la, _ in las
            }
            for measure in ("started", "achieved", "leavers", "esol_assessed", "esol_progressed"):
                for la, _ in las:
                    values[(la, q, f"{name}.{measure}")] = per_la[la][measure]
                values[(TOTAL, q, f"{name}.{measure}")] = _sum(per_la[la][measure] for la, _ in las)
        for counter in ("confirmed", "cross_confirmed", "cross_active_6w", "cross_active_6m"):
            per = [
                _sum(cell(inputs.bridges.get((la, m), {}), counter) for m in q_months)
                for la, _ in las
            ]
            for (la, _), c in zip(las, per, strict=True):
                values[(la, q, f"bridges.{counter}")] = c
            values[(TOTAL, q, f"bridges.{counter}")] = _sum(per)
    p = publish(values, [], control)

    def value_of(ind: Indicator, la: str, q: str) -> dict[str, Any]:
        num = (la, q, ind.numerator) if ind.numerator else None
        den = (la, q, ind.denominator) if ind.denominator else None
        status = "published"
        mark = {"bridges_active_6w_share": "6w", "bridges_active_6m_share": "6m"}.get(ind.key)
        if mark and not observable(quarters[q][-1], BRIDGE_MARKS[mark], today):
            return {
                "value": None,
                "numerator": None,
                "denominator": None,
                "status": "not_yet_observable",
            }
        value: Displayed | float | None
        if ind.kind == "count":
            assert num is not None
            value = p.display(num)
            if not isinstance(value, int):
                status = "withheld"
        elif ind.kind == "rate":
            assert num is not None and den is not None
            value = _rate(p, num, den)
            if value is None:
                status = "withheld"
        else:
            assert num is not None
            days = progress.get((la, q), [])
            value = None
            if days and p.shows_median(num, len(days)):
                value = round(statistics.median(days), 1)
            else:
                status = "withheld"
        return {
            "value": value,
            "numerator": p.display(num) if num is not None else None,
            "denominator": p.display(den) if den is not None else None,
            "status": status,
        }

    def row(la: str, label: str, q: str) -> dict[str, Any]:
        return {
            "local_authority": la,
            "label": label,
            "quarter": q,
            "quarter_label": quarter_label(q),
            "months": quarters[q],
            "values": {ind.key: value_of(ind, la, q) for ind in INDICATORS},
        }

    return {
        "framework": dict(FRAMEWORK),
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "as_of": today.isoformat(),
        "quarters": [
            {"quarter": q, "label": quarter_label(q), "months": ms} for q, ms in quarters.items()
        ],
        "indicators": [
            {
                "key": ind.key,
                "domain": ind.domain,
                "domain_label": DOMAIN_LABELS[ind.domain],
                "name": ind.name,
                "kind": ind.kind,
                "definition": ind.definition,
                "source_events": list(ind.source_events),
            }
            for ind in INDICATORS
        ],
        "rows": [row(la, label, q) for q in quarters for la, label in las],
        "totals": [row(TOTAL, "All boroughs in scope", q) for q in quarters],
        "unmeasured_domains": [dict(d) for d in UNMEASURED_DOMAINS],
    }


def _add_counts(parts: Iterable[Counts]) -> Counts:
    total: Counts = {}
    for counts in parts:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def indicators_csv(report: Mapping[str, Any]) -> str:
    """One line per borough, quarter and indicator (long format), totals last."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    meta = {i["key"]: i for i in report["indicators"]}
    writer.writerow(
        [
            "local_authority",
            "label",
            "quarter",
            "domain",
            "indicator",
            "kind",
            "value",
            "numerator",
            "denominator",
            "status",
        ]
    )
    for row in [*report["rows"], *report["totals"]]:
        for key, v in row["values"].items():
            writer.writerow(
                [
                    row["local_authority"],
                    row["label"],
                    row["quarter"],
                    meta[key]["domain"],
                    key,
                    meta[key]["kind"],
                    "" if v["value"] is None else v["value"],
                    "" if v["numerator"] is None else v["numerator"],
                    "" if v["denominator"] is None else v["denominator"],
                    v["status"],
                ]
            )
    return out.getvalue()


# ---------------------------------------------------------------------------------------
# 4. Matched vs unmatched ESOL learners, stratified

CAVEAT = (
    "An association, not an effect: learners choose to ask for a conversation partner and "
    "are matched when a volunteer fits, so motivation, confidence, time and circumstances "
    "can differ between the groups. Comparing within strata (same start quarter, ESOL "
    "level and borough) removes only those three differences. Do not read the difference "
    "as what matching causes."
)
METHOD = (
    "Strata: start quarter x starting ESOL level x borough. Within each stratum both "
    "groups' rates are compared; the stratified difference (matched - unmatched) weights "
    "each stratum by n1*n0/(n1+n0) (Cochran-Mantel-Haenszel weights) with a 95% Wald "
    "interval, variance sum(w^2 * (p1(1-p1)/n1 + p0(1-p0)/n0)) / sum(w)^2. Rounded mode: "
    "only strata whose four published counts are all numbers enter, and every figure is "
    "computed from published counts; unrounded mode: every stratum with learners in both "
    "groups. Group rates carry 95% Wilson score intervals."
)

ComparisonOutcome = Literal["retention", "achievement"]
OUTCOME_DEFINITIONS: Mapping[ComparisonOutcome, str] = {
    "retention": "stayed / started: enrolments not withdrawn, of those started.",
    "achievement": "achieved / leavers: completed with outcome 1, of those completed or "
    "withdrawn (the further-education 'all leavers' convention).",
}


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``x`` successes in ``n`` trials (None for n = 0)."""
    if n <= 0:
        return None
    x = max(0, min(x, n))
    phat = x / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return round(max(0.0, centre - half), RATE_DIGITS), round(min(1.0, centre + half), RATE_DIGITS)


@dataclass(frozen=True)
class Stratum:
    x1: int
    n1: int
    x0: int
    n0: int


def stratified_difference(strata: Sequence[Stratum], z: float = Z95) -> dict[str, float] | None:
    """Cochran-Mantel-Haenszel-weighted risk difference with a Wald interval."""
    usable = [s for s in strata if s.n1 > 0 and s.n0 > 0]
    if not usable:
        return None
    weights = [s.n1 * s.n0 / (s.n1 + s.n0) for s in usable]
    total = math.fsum(weights)
    diffs, variances = [], []
    for s in usable:
        p1, p0 = min(s.x1, s.n1) / s.n1, min(s.x0, s.n0) / s.n0
        diffs.append(p1 - p0)
        variances.append(p1 * (1 - p1) / s.n1 + p0 * (1 - p0) / s.n0)
    estimate = math.fsum(w * d for w, d in zip(weights, diffs, strict=True)) / total
    var = math.fsum(w * w * v for w, v in zip(weights, variances, strict=True)) / total**2
    half = z * math.sqrt(var)
    return {
        "estimate": round(estimate, RATE_DIGITS),
        "ci_low": round(max(-1.0, estimate - half), RATE_DIGITS),
        "ci_high": round(min(1.0, estimate + half), RATE_DIGITS),
    }


def _arm_cells(counts: Counts, prefix: str) -> dict[str, Cell]:
    def c(name: str) -> Cell:
        return cell(counts, prefix + name)

    started, withdrawn, completed = c("started"), c("withdrawn"), c("completed")
    return {
        "started": started,
        "stayed": started - withdrawn,
        "achieved": c("achieved"),
        "leavers": completed + withdrawn,
    }


OUTCOME_CELLS: Mapping[ComparisonOutcome, tuple[str, str]] = {
    "retention": ("stayed", "started"),
    "achievement": ("achieved", "leavers"),
}


GROUPS = {
    "matched": "ESOL enrolments of learners with at least one confirmed cross-background "
    "befriending match (whenever it was confirmed).",
    "unmatched": "ESOL enrolments of learners with no confirmed befriending match. Learners "
    "whose only matches bridged no background are in neither group.",
}


def _strata(
    sums: Mapping[tuple[str, str, str], Counts], months: set[str]
) -> dict[tuple[str, str, str], Counts]:
    """(local authority, level, month) counters → (local authority, level, quarter)."""
    esol_levels = {lvl.value for lvl in ESOL_LEVELS}
    out: dict[tuple[str, str, str], Counts] = {}
    for (la, level, month), counts in sums.items():
        if month in months and level in esol_levels:
            key = (la, level, quarter_of(month))
            out[key] = _add_counts([out.get(key, {}), counts])
    return out


def build_esol_comparison(
    outcomes: Mapping[tuple[str, str, str], Counts],
    bridged: Mapping[tuple[str, str, str], Counts],
    filters: Filters,
    *,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """``outcomes``: ESOL outcome counters (with ``matched_*``), ``bridged``: counters of
    the enrolments of learners with a cross-background match, both keyed by (local
    authority, level, month)."""
    months = set(month_range(filters, (m for _, _, m in [*outcomes, *bridged])))
    everyone_by = _strata(outcomes, months)
    bridged_by = _strata(bridged, months)
    strata_counts = {k: everyone_by.get(k, {}) for k in {*everyone_by, *bridged_by}}
    values: dict[CellId, Cell] = {}
    for key, counts in strata_counts.items():
        everyone = _arm_cells(counts, "")
        any_match = _arm_cells(counts, "matched_")
        cross = _arm_cells(bridged_by.get(key, {}), "")
        for name in everyone:
            values[(*key, "matched", name)] = cross[name]
            values[(*key, "unmatched", name)] = everyone[name] - any_match[name]
    for group in GROUPS:
        for name in ("started", "stayed", "achieved", "leavers"):
            values[(TOTAL, group, name)] = _sum(values[(*k, group, name)] for k in strata_counts)
    p = publish(values, [], control)
    rounded = control is not None

    def published_int(cell_id: CellId) -> int | None:
        shown = p.display(cell_id)
        return shown if isinstance(shown, int) else None

    def arm(name: str, x_name: str, n_name: str) -> dict[str, Any]:
        x, n = (TOTAL, name, x_name), (TOTAL, name, n_name)
        rate = p.rate(x, (n,))
        xi, ni = published_int(x), published_int(n)
        interval = (
            wilson(xi, ni) if rate is not None and xi is not None and ni is not None else None
        )
        return {
            "n": p.display(n),
            "x": p.display(x),
            "rate": rate,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
        }

    def outcome(which: ComparisonOutcome) -> dict[str, Any]:
        x_name, n_name = OUTCOME_CELLS[which]
        used: list[dict[str, Any]] = []
        strata: list[Stratum] = []
        both = 0
        for key in sorted(strata_counts):
            figures = [
                published_int((*key, a, nm))
                for a in ("matched", "unmatched")
                for nm in (x_name, n_name)
            ]
            true_n = [values[(*key, a, n_name)].count for a in ("matched", "unmatched")]
            if all(n > 0 for n in true_n):
                both += 1
            if any(f is None for f in figures):
                continue
            x1, n1, x0, n0 = (int(f) for f in figures if f is not None)
            if n1 <= 0 or n0 <= 0 or (rounded and min(n1, n0) < _threshold(control)):
                continue
            strata.append(Stratum(min(x1, n1), n1, min(x0, n0), n0))
            la, level, q = key
            used.append(
                {
                    "local_authority": la,
                    "level": level,
                    "level_label": LEVEL_LABELS.get(level, level),
                    "quarter": q,
                    "matched": {"x": x1, "n": n1},
                    "unmatched": {"x": x0, "n": n0},
                }
            )
        diff = stratified_difference(strata)
        return {
            "outcome": which,
            "definition": OUTCOME_DEFINITIONS[which],
            "matched": arm("matched", x_name, n_name),
            "unmatched": arm("unmatched", x_name, n_name),
            "stratified_difference": {
                "estimate": diff["estimate"] if diff else None,
                "ci_low": diff["ci_low"] if diff else None,
                "ci_high": diff["ci_high"] if diff else None,
                "strata_used": len(strata),
                "strata_with_both_groups": None if rounded else both,
                "matched_in_strata": sum(s.n1 for s in strata),
                "unmatched_in_strata": sum(s.n0 for s in strata),
            },
            "strata": used,
        }

    return {
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "question": "Do ESOL learners with a confirmed cross-background befriending match stay "
        "and achieve more than comparable learners without a match?",
        "groups": dict(GROUPS),
        "method": METHOD,
        "caveat": CAVEAT,
        "outcomes": [outcome("retention"), outcome("achievement")],
    }


def _threshold(control: DisclosureMethod | None) -> int:
    return int(getattr(control, "threshold", 0) or 0)


Builder = Callable[..., dict[str, Any]]
