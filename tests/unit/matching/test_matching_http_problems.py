"""Matching's routes answer a use case's refusal, or a lost race with another write, through
one guard (handlers.domain_problems) with the problem handlers.problem_for names; anything
else is not theirs to translate."""

from __future__ import annotations

import pytest

from services.matching.domain import DomainError
from services.matching.entrypoints.http import domain_problems, problem_for
from services.matching.repository import Conflict
from services.matching.use_cases import NotFound, OutOfScope, VolunteerNotFound
from shared.problems import PROBLEM_BASE, Problem


@pytest.mark.parametrize(
    "refusal, status, slug, detail",
    [
        (NotFound("no such match"), 404, "match-not-found", "no such match"),
        (OutOfScope("not yours"), 403, "out-of-scope", "not yours"),
        (Conflict("changed"), 409, "concurrent-change", "changed; reload and retry"),
    ],
)
def test_a_refusal_becomes_its_problem(
    refusal: Exception, status: int, slug: str, detail: str
) -> None:
    with pytest.raises(Problem) as raised, domain_problems():
        raise refusal
    assert raised.value.status == status
    assert raised.value.body()["type"] == PROBLEM_BASE + slug
    assert raised.value.detail == detail
    assert raised.value.__suppress_context__


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), domain_problems():
        raise KeyError("a bug, not a refusal")


def test_a_subclass_gets_its_own_problem_before_its_base() -> None:
    problem = problem_for(VolunteerNotFound("no such volunteer"))
    assert (problem.status, problem.slug) == (404, "volunteer-not-found")


def test_any_other_rule_is_rule_violated() -> None:
    problem = problem_for(DomainError("a rule"))
    assert (problem.status, problem.title, problem.slug) == (422, "Unprocessable", "rule-violated")
