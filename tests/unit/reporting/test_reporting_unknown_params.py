"""A report refuses query parameters it does not take (a misspelt filter would otherwise be
silently ignored): 422 problem+json naming each, the same for the measure and the
integration reports, which differ only in what they allow and in one sentence."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Request

from services.reporting.entrypoints import http, integration_http
from shared.problems import PROBLEM_BASE, Problem


def request_with(query: str) -> Request:
    return Request({"type": "http", "query_string": query.encode(), "headers": []})


def refusal(dependency: Any, query: str) -> dict[str, Any]:
    with pytest.raises(Problem) as raised:
        dependency.dependency(request_with(query))
    return raised.value.body()


def unknown(*names: str) -> list[dict[str, str]]:
    return [
        {
            "pointer": f"/{name}",
            "field": name,
            "message": "unknown query parameter",
            "type": "extra_forbidden",
        }
        for name in names
    ]


def test_a_measure_report_names_each_unknown_parameter_and_what_it_allows() -> None:
    body = refusal(http.known_params("by"), "by=sex&rounding=none&colour=red")
    assert body == {
        "type": PROBLEM_BASE + "validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "Unknown query parameter(s): colour, rounding. Allowed: by, "
        "combined_authority, from, level, local_authority, programme, to, unrounded. "
        "Disclosure settings are deployment settings, not request parameters.",
        "errors": unknown("colour", "rounding"),
    }


def test_an_integration_report_allows_area_and_months_but_not_programme() -> None:
    body = refusal(integration_http.only_params(), "programme=esol&from=2025-01")
    assert body == {
        "type": PROBLEM_BASE + "validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "Unknown query parameter(s): programme. Allowed: combined_authority, "
        "from, local_authority, to, unrounded.",
        "errors": unknown("programme"),
    }


@pytest.mark.parametrize(
    "dependency, query",
    [
        (http.known_params("by", "year"), "by=year&year=2025/26&unrounded=true"),
        (integration_http.only_params("by"), "by=sex&combined_authority=E47000001"),
    ],
)
def test_known_parameters_pass(dependency: Any, query: str) -> None:
    assert dependency.dependency(request_with(query)) is None
