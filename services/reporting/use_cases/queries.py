"""Report use cases: scope a request to what the caller may see, sum the aggregates,
and hand the sums to the pure report builders (which apply disclosure control)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.reporting.domain.dimensions import (
    DIMENSIONS,
    FILTERED,
    BreakdownBy,
    Filters,
    categories,
)
from services.reporting.domain.disclosure import DisclosureMethod
from services.reporting.domain.projection import Counts
from services.reporting.domain.qar import QarBy, build_qar
from services.reporting.domain.reports import (
    BreakdownInputs,
    SummaryInputs,
    build_breakdown,
    build_summary,
    disclosure_note,
)
from services.reporting.qar_repository import QarReader
from services.reporting.repository import ReportReader
from shared.auth import Principal, Role
from shared.contracts.reference import CombinedAuthority, Programme, combined_authority_of

# Audit trail of unrounded (analyst-only) requests: who, when (the log record's time),
# which report and filters. Never a figure.
audit = logging.getLogger("services.reporting.audit")


@dataclass(frozen=True)
class ReportRequest:
    combined_authority: CombinedAuthority | None = None
    local_authority: str | None = None
    programme: str | None = None
    level: str | None = None
    month_from: str | None = None
    month_to: str | None = None
    unrounded: bool = False


def scope_of(principal: Principal) -> tuple[str, ...]:
    """Combined authorities a caller may report on (none listed = all)."""
    if principal.combined_authorities:
        return tuple(ca.value for ca in principal.combined_authorities)
    return tuple(ca.value for ca in CombinedAuthority)


class ReportRefused(Exception):
    """A report request that is not answered; the message says why, for the caller."""


class UnroundedNeedsAnalyst(ReportRefused):
    """Unrounded figures were asked for by a role other than analyst."""

    def __init__(self) -> None:
        super().__init__("Unrounded figures are for the analyst role only.")


class OutsideScope(ReportRefused):
    """The area asked for lies outside the combined authorities the caller may see."""


class InvalidReportQuery(ReportRefused):
    """A filter that cannot be answered as given: ``field`` is the query parameter,
    ``reason`` what is wrong with it, the message a sentence for the whole request."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


def resolve(principal: Principal, request: ReportRequest) -> tuple[Filters, bool]:
    """The filters to apply and whether figures are rounded; raises a ReportRefused
    otherwise."""
    if request.unrounded and principal.role != Role.ANALYST:
        raise UnroundedNeedsAnalyst
    scope = scope_of(principal)
    cas = scope
    if request.combined_authority is not None:
        if request.combined_authority.value not in scope:
            raise OutsideScope("You may not report on that combined authority.")
        cas = (request.combined_authority.value,)
    if request.local_authority is not None:
        owner = combined_authority_of(request.local_authority)
        if owner is None:
            raise InvalidReportQuery(
                "local_authority",
                "not an ONS code of a local authority in a combined authority",
                "Unknown local authority code.",
            )
        if owner.value not in cas:
            raise OutsideScope(
                "That local authority is outside the combined authorities you may report on."
            )
        cas = (owner.value,)
    if request.month_from and request.month_to and request.month_from > request.month_to:
        raise InvalidReportQuery("from", "must not be after 'to'", "'from' must not be after 'to'.")
    filters = Filters(
        combined_authorities=cas,
        local_authority=request.local_authority,
        month_from=request.month_from,
        month_to=request.month_to,
        **{name: getattr(request, name) for name in FILTERED},
    )
    return filters, not request.unrounded


def audit_unrounded(principal: Principal, report: str, filters: Filters) -> None:
    """Record that ``principal`` asked for unrounded figures (never the figures)."""
    audit.info(
        "unrounded report requested",
        extra={
            "audit": "unrounded_report",
            "principal_id": principal.principal_id,
            "principal_name": principal.name,
            "role": principal.role.value,
            "report": report,
            "filters": filters.echo(),
        },
    )


def _one(sums: dict[str, Counts]) -> Counts:
    return next(iter(sums.values()), {})


async def summary(
    reader: ReportReader, filters: Filters, *, control: DisclosureMethod | None
) -> dict[str, Any]:
    esol_filters = Filters(**{**filters.__dict__, "programme": Programme.ESOL.value})
    if filters.programme not in (None, Programme.ESOL.value):
        esol: Counts = {}
    else:
        esol = _one(await reader.sum_counts("outcomes", esol_filters, None))
    inputs = SummaryInputs(
        outcomes=_one(await reader.sum_counts("outcomes", filters, None)),
        esol=esol,
        matching=_one(await reader.sum_counts("matching", filters, None)),
        participants=_one(await reader.sum_counts("participants", filters, None)),
        wait_days=await reader.wait_days(filters),
    )
    return build_summary(inputs, filters, control=control)


def regrouped(sums: dict[str, Counts], group: Callable[[str], str]) -> dict[str, Counts]:
    """``sums`` per stored code added up per reported category."""
    out: dict[str, Counts] = {}
    for code, counts in sums.items():
        target = out.setdefault(group(code), {})
        for name, value in counts.items():
            target[name] = target.get(name, 0) + value
    return out


async def breakdown(
    reader: ReportReader, by: BreakdownBy, filters: Filters, *, control: DisclosureMethod | None
) -> dict[str, Any]:
    dimension = DIMENSIONS[by]
    outcomes = await reader.sum_counts(dimension.aggregate, filters, by)
    if dimension.group is not None:
        outcomes = regrouped(outcomes, dimension.group)
    matching: dict[str, Counts] | None = None
    participants: dict[str, Counts] | None = None
    if "matching" in dimension.also:
        matching = await reader.sum_counts("matching", filters, by)
    if "participants" in dimension.also:
        participants = await reader.sum_counts("participants", filters, by)
    present = set(outcomes) | set(matching or {})
    rows = categories(by, filters, present)
    inputs = BreakdownInputs(outcomes=outcomes, matching=matching, participants=participants)
    return build_breakdown(by, rows, inputs, filters, control=control)


# ---------------------------------------------------------------------------------------
# QAR measures (issue 15, domain/qar.py, docs/qar.md).


async def qar(
    reader: QarReader,
    by: QarBy,
    filters: Filters,
    years: Sequence[str],
    *,
    control: DisclosureMethod | None,
) -> dict[str, Any]:
    """QAR counts and rates by hybrid end year, borough, programme or level."""
    sums = await reader.qar_sums(filters, by, years)
    if by == "year":
        present = sorted(set(sums) | set(years))
        rows = [(y, y) for y in present]
    else:
        rows = categories(by, filters, sums)
    echo = {**filters.echo(), "years": list(years)}
    echo.pop("from", None)
    echo.pop("to", None)
    return build_qar(
        by, rows, sums, filters=echo, disclosure=disclosure_note(control), control=control
    )
