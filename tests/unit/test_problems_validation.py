"""Every 422 for a request that breaks a rule has one shape (shared.problems.validation_failed),
whichever route or handler answers it."""

from __future__ import annotations

from shared.problems import PROBLEM_BASE, SCHEMA_MISMATCH, field_errors, validation_failed


def test_validation_failed_is_a_422_with_the_field_errors() -> None:
    errors = field_errors([{"loc": ("body", "items", 0, "start_date"), "msg": "a date"}])
    problem = validation_failed("The submission breaks the rules.", errors)
    assert problem.status == 422
    assert problem.body("/v1/enrolments") == {
        "type": PROBLEM_BASE + "validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "The submission breaks the rules.",
        "instance": "/v1/enrolments",
        "errors": [
            {
                "pointer": "/items/0/start_date",
                "field": "items.0.start_date",
                "message": "a date",
                "type": "value_error",
            }
        ],
    }


def test_without_errors_the_document_has_none() -> None:
    body = validation_failed(SCHEMA_MISMATCH).body()
    assert body == {
        "type": PROBLEM_BASE + "validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "The request does not match the schema; see errors for each field.",
    }
