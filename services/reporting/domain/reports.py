"""Report measures and tables built from summed aggregates, with disclosure control
applied. Pure functions: the repository sums, this module decides what is published.

Definitions (also in the README):

* started: enrolments accepted; withdrawn: enrolments withdrawn; stayed = started - withdrawn;
  completed: completion status 2; on break: completion status 6 (a break in learning);
  continuing = stayed - completed - on break (learning, not on a break);
  achieved: completed with outcome 1 (achieved).
* leavers = completed + withdrawn; completion rate = completed ÷ leavers; achievement
  rate = achieved ÷ leavers (the further-education "all leavers" convention).
* ESOL progression: an ESOL enrolment whose highest level reached (assessment or
  completion) is above its starting level, among ESOL enrolments with a level reached.
* matched learners: learners with at least one confirmed befriending match.
* waiting: participants who opted in (counted in the month they opted in) and have never
  had a confirmed match.
* median wait: days from ``waited_since`` to ``confirmed_at`` over confirmed matches.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.disclosure import (
    Cell,
    CellKeyMethod,
    DisclosureMethod,
    Displayed,
    LegacyMethod,
    Line,
    Published,
    grid_lines,
    publish,
    sum_cells,
)
from services.reporting.domain.projection import (
    MATCH_FIELDS,
    PARTICIPANT_FIELDS,
    WITHDRAWAL_FIELDS,
    Counts,
    ck,
)
from shared.contracts.reference import (
    COMBINED_AUTHORITY_NAMES,
    CombinedAuthority,
    Programme,
    WithdrawalReason,
)

WITHDRAWAL_LABELS: dict[WithdrawalReason, str] = {
    # Wording of the ILR WithdrawReason code list (2025/26, 2026/27).
    WithdrawalReason.TRANSFERRED_TO_ANOTHER_PROVIDER: "Transferred to another provider",
    WithdrawalReason.INJURY_OR_ILLNESS: "Injury or illness",
    WithdrawalReason.TRANSFERRED_BY_INTERVENTION_OR_CONSENT: (
        "Transferred to another provider by intervention or with consent"
    ),
    WithdrawalReason.OLASS_OUTSIDE_PROVIDER_CONTROL: (
        "OLASS learner withdrawn, outside the provider's control"
    ),
    WithdrawalReason.LEARNER_MADE_REDUNDANT: "Made redundant",
    WithdrawalReason.TRANSFERRED_NEW_LEARNING_AIM: "Transferred to a new learning aim",
    WithdrawalReason.TRANSFERRED_GOVERNMENT_STRATEGY: (
        "Transferred to another provider for learning meeting a government strategy"
    ),
    WithdrawalReason.ACADEMIC_FAILURE: "Academic failure (HE only)",
    WithdrawalReason.FINANCIAL_REASONS: "Financial reasons",
    WithdrawalReason.OTHER_PERSONAL_REASONS: "Other personal reasons",
    WithdrawalReason.WRITTEN_OFF_HE: "Written off after a lapse of time (HE only)",
    WithdrawalReason.EXCLUSION: "Exclusion",
    WithdrawalReason.TRANSFERRED_DUE_TO_MERGER: "Transferred due to a merger",
    WithdrawalReason.INDUSTRIAL_PLACEMENT_WITHDREW: "Industrial placement learner withdrew",
    WithdrawalReason.OTHER: "Other",
    WithdrawalReason.NOT_KNOWN: "Not known",
}


# ---------------------------------------------------------------------------------------


def _get(counts: Mapping[str, int], name: str) -> int:
    return int(counts.get(name, 0))


def cell(counts: Mapping[str, int], name: str) -> Cell:
    """Counter ``name`` with its record-key sum."""
    return Cell(_get(counts, name), _get(counts, ck(name)))


def derived(counts: Mapping[str, int]) -> dict[str, Cell]:
    """Enrolment measures from outcome counters."""
    started, withdrawn, completed = (
        cell(counts, "started"),
        cell(counts, "withdrawn"),
        cell(counts, "completed"),
    )
    on_break = cell(counts, "on_break")
    return {
        "started": started,
        "stayed": started - withdrawn,
        "withdrawn": withdrawn,
        "completed": completed,
        "continuing": started - withdrawn - completed - on_break,
        "on_break": on_break,
        "achieved": cell(counts, "achieved"),
        "esol_assessed": cell(counts, "esol_assessed"),
        "esol_progressed": cell(counts, "esol_progressed"),
    }


def median_wait(wait_days: Sequence[float], p: Published, count_cell: Any) -> float | None:
    if not wait_days or not p.shows_median(count_cell, len(wait_days)):
        return None
    return round(statistics.median(wait_days), 1)


@dataclass(frozen=True)
class SummaryInputs:
    outcomes: Counts
    esol: Counts
    matching: Counts
    participants: Counts
    wait_days: Sequence[float] = field(default_factory=tuple)


MVU_COLUMNS = ("started", "withdrawn", "completed", "achieved", "esol_assessed", "esol_progressed")
ENROLMENT_MEASURES = (
    "started",
    "stayed",
    "withdrawn",
    "completed",
    "continuing",
    "on_break",
    "achieved",
)


def build_summary(
    inputs: SummaryInputs, filters: Filters, *, control: DisclosureMethod | None
) -> dict[str, Any]:
    """The summary report; ``control`` is the disclosure method (``None``: unrounded)."""
    o = derived(inputs.outcomes)
    e = derived(inputs.esol)
    matched = {c: cell(inputs.esol, f"matched_{c}") for c in MVU_COLUMNS}
    unmatched = {c: e[c] - matched[c] for c in MVU_COLUMNS}
    esol_only = filters.programme == Programme.ESOL.value

    values: dict[Any, Cell] = {}
    lines: list[Line] = []

    def enrol_cell(name: str) -> tuple[str, ...]:
        # With an ESOL-only filter the headline and the ESOL "all" row are the same
        # numbers: one cell each, so they are never shown one way here, another there.
        if esol_only and name in MVU_COLUMNS:
            return ("esol", "all", name)
        return ("enrol", name)

    for name in ENROLMENT_MEASURES:
        values[enrol_cell(name)] = o[name]
    lines.append(Line(enrol_cell("started"), (enrol_cell("stayed"), enrol_cell("withdrawn"))))
    lines.append(
        Line(
            enrol_cell("stayed"),
            (enrol_cell("continuing"), enrol_cell("on_break"), enrol_cell("completed")),
        )
    )
    reasons = [r for r in WithdrawalReason]
    for r in reasons:
        values[("reason", r.value)] = cell(inputs.outcomes, WITHDRAWAL_FIELDS[r])
    lines.append(Line(enrol_cell("withdrawn"), tuple(("reason", r.value) for r in reasons)))

    for col in MVU_COLUMNS:
        values[("esol", "matched", col)] = matched[col]
        values[("esol", "unmatched", col)] = unmatched[col]
        values[("esol", "all", col)] = e[col]
    lines += grid_lines(("matched", "unmatched"), MVU_COLUMNS, total_row="all")
    lines = [Line(_esol_cell(ln.total), tuple(_esol_cell(m) for m in ln.members)) for ln in lines]

    for name in MATCH_FIELDS:
        values[("match", name)] = cell(inputs.matching, name)
    for name in PARTICIPANT_FIELDS:
        values[("participants", name)] = cell(inputs.participants, name)
    lines.append(
        Line(
            ("participants", "opted_in"), (("participants", "waiting"), ("participants", "matched"))
        )
    )

    p = publish(values, lines, control)
    show = p.display

    def esol_block(row: str) -> dict[str, Any]:
        def c(name: str) -> tuple[str, ...]:
            return ("esol", row, name)

        leavers = (c("completed"), c("withdrawn"))
        return {
            **{col: show(c(col)) for col in MVU_COLUMNS},
            "completion_rate": p.rate(c("completed"), leavers),
            "achievement_rate": p.rate(c("achieved"), leavers),
            "progression_rate": p.rate(c("esol_progressed"), (c("esol_assessed"),)),
        }

    leavers = (enrol_cell("completed"), enrol_cell("withdrawn"))
    return {
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "enrolments": {
            **{name: show(enrol_cell(name)) for name in ENROLMENT_MEASURES},
            "completion_rate": p.rate(enrol_cell("completed"), leavers),
            "achievement_rate": p.rate(enrol_cell("achieved"), leavers),
            "retention_rate": p.rate(enrol_cell("stayed"), (enrol_cell("started"),)),
        },
        "withdrawal_reasons": [
            {
                "code": r.value,
                "reason": WITHDRAWAL_LABELS[r],
                "count": show(("reason", r.value)),
            }
            for r in reasons
        ],
        "esol": {
            "all": esol_block("all"),
            "matched": esol_block("matched"),
            "unmatched": esol_block("unmatched"),
        },
        "matching": {
            **{name: show(("match", name)) for name in MATCH_FIELDS},
            "cross_background_share": p.rate(
                ("match", "cross_background"), (("match", "confirmed"),)
            ),
            "median_wait_days": median_wait(inputs.wait_days, p, ("match", "confirmed")),
        },
        "waiting_list": {name: show(("participants", name)) for name in PARTICIPANT_FIELDS},
    }


def _esol_cell(cell: Any) -> Any:
    """grid_lines names cells (row, column); the summary's ESOL cells are ("esol", row, col)."""
    if (
        isinstance(cell, tuple)
        and len(cell) == 2
        and cell[0] in ("matched", "unmatched", "all")
        and cell[1] in MVU_COLUMNS
    ):
        return ("esol", *cell)
    return cell


def disclosure_note(control: DisclosureMethod | None) -> dict[str, Any]:
    if control is None:
        return {
            "mode": "unrounded",
            "method": "none",
            "note": "Unrounded figures for authorised analysts only: do not publish.",
        }
    if isinstance(control, LegacyMethod):
        return {
            "mode": "rounded",
            "method": "legacy",
            "note": (
                "Legacy method (not safe against differencing): counts of 1-4 are shown as "
                "'<5', others rounded to 5, 'c' marks a secondary suppression."
            ),
            "threshold": control.threshold,
            "rounding_base": 5,
            "suppressed": "<5",
            "secondary": "c",
        }
    return cell_key_note(control)


def cell_key_note(method: CellKeyMethod) -> dict[str, Any]:
    return {
        "mode": "rounded",
        "method": "cell_key",
        "note": (
            "Every count has had a small, consistent amount of noise added (cell-key "
            f"perturbation, at most ±{method.max_noise}), then counts below "
            f"{method.threshold} are shown as '{method.small}' and the rest rounded to the "
            f"nearest {method.rounding_base} ('{method.small}' includes zero). Parts need "
            "not add up to totals. Rates are computed from the published counts and "
            "withheld beside a small count. See docs/disclosure.md."
        ),
        "threshold": method.threshold,
        "rounding_base": method.rounding_base,
        "max_noise": method.max_noise,
        "suppressed": method.small,
        "secondary": None,
    }


# ---------------------------------------------------------------------------------------
# Breakdowns: one row per category, a total row, disclosure control across the table.

OUTCOME_COLUMNS = (
    ("started", "Started"),
    ("stayed", "Stayed"),
    ("withdrawn", "Withdrawn"),
    ("completed", "Completed"),
    ("continuing", "Continuing"),
    ("on_break", "On a break"),
    ("achieved", "Achieved"),
    ("esol_assessed", "ESOL assessed"),
    ("esol_progressed", "ESOL progressed"),
)
MATCH_COLUMNS = (
    ("matches_confirmed", "Matches confirmed"),
    ("cross_background", "Cross-background matches"),
)
WAITING_COLUMNS = (("waiting", "Waiting for a match"),)
RATE_COLUMNS = (
    ("completion_rate", "Completion rate"),
    ("achievement_rate", "Achievement rate"),
    ("esol_progression_rate", "ESOL progression rate"),
)
MATCH_RATE_COLUMNS = (("cross_background_share", "Cross-background share"),)

TOTAL = "__total__"


@dataclass(frozen=True)
class BreakdownInputs:
    outcomes: Mapping[str, Counts]
    matching: Mapping[str, Counts] | None = None
    participants: Mapping[str, Counts] | None = None


def build_breakdown(
    by: str,
    rows: Sequence[tuple[str, str]],
    inputs: BreakdownInputs,
    filters: Filters,
    *,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """A breakdown table; ``control`` is the disclosure method (``None``: unrounded)."""
    columns = list(OUTCOME_COLUMNS)
    rate_columns = list(RATE_COLUMNS)
    if inputs.matching is not None:
        columns += MATCH_COLUMNS
        rate_columns += MATCH_RATE_COLUMNS
    if inputs.participants is not None:
        columns += WAITING_COLUMNS
    keys = [c for c, _ in columns]
    codes = [code for code, _ in rows]

    def measures(code: str) -> dict[str, Cell]:
        m = derived(inputs.outcomes.get(code, {}))
        if inputs.matching is not None:
            match = inputs.matching.get(code, {})
            m["matches_confirmed"] = cell(match, "confirmed")
            m["cross_background"] = cell(match, "cross_background")
        if inputs.participants is not None:
            m["waiting"] = cell(inputs.participants.get(code, {}), "waiting")
        return m

    per_row = {code: measures(code) for code in codes}
    total = {k: sum_cells(per_row[c][k] for c in codes) for k in keys}
    per_row[TOTAL] = total
    values = {(code, k): per_row[code][k] for code in (*codes, TOTAL) for k in keys}
    lines = grid_lines(
        codes, keys, total_row=TOTAL, row_relations=[("started", ("stayed", "withdrawn"))]
    )
    p = publish(values, lines, control)

    def row_out(code: str, label: str) -> dict[str, Any]:
        leavers = ((code, "completed"), (code, "withdrawn"))
        rates: dict[str, float | None] = {
            "completion_rate": p.rate((code, "completed"), leavers),
            "achievement_rate": p.rate((code, "achieved"), leavers),
            "esol_progression_rate": p.rate((code, "esol_progressed"), ((code, "esol_assessed"),)),
        }
        if inputs.matching is not None:
            rates["cross_background_share"] = p.rate(
                (code, "cross_background"), ((code, "matches_confirmed"),)
            )
        return {
            "code": "total" if code == TOTAL else code,
            "label": label,
            "values": {k: p.display((code, k)) for k in keys},
            "rates": rates,
        }

    return {
        "by": by,
        "filters": filters.echo(),
        "disclosure": disclosure_note(control),
        "columns": [{"key": k, "label": label} for k, label in columns],
        "rate_columns": [{"key": k, "label": label} for k, label in rate_columns],
        "rows": [row_out(code, label) for code, label in rows],
        "total": row_out(TOTAL, "Total"),
    }


def breakdown_csv(table: Mapping[str, Any]) -> str:
    """The breakdown as CSV: one row per category then the total; ``<5`` and ``c`` kept."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cols = [c["key"] for c in table["columns"]]
    rates = [c["key"] for c in table["rate_columns"]]
    writer.writerow([table["by"], "label", *cols, *rates])
    for row in [*table["rows"], table["total"]]:
        writer.writerow(
            [
                row["code"],
                row["label"],
                *[_csv_value(row["values"][c]) for c in cols],
                *["" if row["rates"][r] is None else row["rates"][r] for r in rates],
            ]
        )
    return out.getvalue()


def _csv_value(value: Displayed) -> str:
    return str(value)


def combined_authority_label(code: str) -> str:
    return COMBINED_AUTHORITY_NAMES[CombinedAuthority(code)]
