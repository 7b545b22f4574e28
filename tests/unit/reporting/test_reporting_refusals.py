"""Report requests that are refused: queries.resolve says why in domain terms, and the
HTTP edge (http.resolve) answers each with the same problem+json as always."""

from __future__ import annotations

from typing import Any

import pytest

from services.reporting.entrypoints import http
from services.reporting.use_cases import queries
from shared.auth import Principal, Role
from shared.contracts.reference import CombinedAuthority
from shared.problems import PROBLEM_BASE, Problem

MANCHESTER = CombinedAuthority.GREATER_MANCHESTER
COORDINATOR = Principal(
    principal_id="c1", name="Coordinator", role=Role.COORDINATOR, combined_authorities=(MANCHESTER,)
)
ANALYST = Principal(principal_id="a1", name="Analyst", role=Role.ANALYST)
BIRMINGHAM = "E08000025"  # West Midlands, outside the coordinator's scope


def forbidden(slug: str, detail: str) -> dict[str, Any]:
    return {"type": PROBLEM_BASE + slug, "title": "Forbidden", "status": 403, "detail": detail}


def invalid(field: str, detail: str, message: str) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + "validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": detail,
        "errors": [
            {"pointer": f"/{field}", "field": field, "message": message, "type": "value_error"}
        ],
    }


Case = tuple[Principal, queries.ReportRequest, type[queries.ReportRefused], dict[str, Any]]
CASES: list[Case] = [
    (
        COORDINATOR,
        queries.ReportRequest(unrounded=True),
        queries.UnroundedNeedsAnalyst,
        forbidden("unrounded-needs-analyst", "Unrounded figures are for the analyst role only."),
    ),
    (
        COORDINATOR,
        queries.ReportRequest(combined_authority=CombinedAuthority.WEST_MIDLANDS),
        queries.OutsideScope,
        forbidden("outside-scope", "You may not report on that combined authority."),
    ),
    (
        COORDINATOR,
        queries.ReportRequest(local_authority=BIRMINGHAM),
        queries.OutsideScope,
        forbidden(
            "outside-scope",
            "That local authority is outside the combined authorities you may report on.",
        ),
    ),
    (
        ANALYST,
        queries.ReportRequest(local_authority="E06999999"),
        queries.InvalidReportQuery,
        invalid(
            "local_authority",
            "Unknown local authority code.",
            "not an ONS code of a local authority in a combined authority",
        ),
    ),
    (
        ANALYST,
        queries.ReportRequest(month_from="2025-03", month_to="2025-01"),
        queries.InvalidReportQuery,
        invalid("from", "'from' must not be after 'to'.", "must not be after 'to'"),
    ),
]


@pytest.mark.parametrize(("caller", "request_", "refusal", "problem"), CASES)
def test_each_refusal_is_a_domain_outcome_and_answered_at_the_edge(
    caller: Principal,
    request_: queries.ReportRequest,
    refusal: type[queries.ReportRefused],
    problem: dict[str, Any],
) -> None:
    with pytest.raises(refusal):
        queries.resolve(caller, request_)
    with pytest.raises(Problem) as answered:
        http.resolve(caller, request_)
    assert answered.value.body() == problem


def test_every_kind_of_refusal_has_an_http_answer() -> None:
    kinds = set(queries.ReportRefused.__subclasses__())
    assert kinds == set(http._REFUSALS)


def test_an_allowed_request_passes_through_the_edge() -> None:
    request_ = queries.ReportRequest(local_authority="E08000003", unrounded=True)
    assert http.resolve(ANALYST, request_) == queries.resolve(ANALYST, request_)
