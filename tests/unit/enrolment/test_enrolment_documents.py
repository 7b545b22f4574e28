"""The stored shape of an enrolment (``enrolments`` documents) and reading it back: the
shape is data at rest, so it is pinned here, not only round-tripped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from services.enrolment.domain import Enrolment, Progress, accept, apply_progress
from services.enrolment.repository import enrolment_document, enrolment_from_document
from shared.contracts.enrolment import EnrolmentSubmission
from tests.unit.enrolment.enrolment_fakes import NOW, PROVIDER, PSEUDONYMS, TODAY, submission

PROGRESS: TypeAdapter[Any] = TypeAdapter(Progress)


def enrolment_after(*records: dict[str, Any]) -> Enrolment:
    enrolment, _ = accept(
        EnrolmentSubmission.model_validate(submission()), PROVIDER, PSEUDONYMS, NOW
    )
    for record in records:
        progress = PROGRESS.validate_python(record)
        enrolment = apply_progress(enrolment, progress, TODAY, NOW).enrolment
    return enrolment


def as_read_back(doc: dict[str, Any]) -> dict[str, Any]:
    """What MongoDB returns: BSON dates without their time zone."""
    return {
        **doc,
        "history": [{**h, "at": h["at"].replace(tzinfo=None)} for h in doc["history"]],
    }


def test_the_lifecycle_is_stored_as_plain_values_with_the_status_beside_it() -> None:
    completed = enrolment_after(
        {
            "kind": "completion",
            "completed_on": "2026-02-20",
            "outcome": 1,
            "level_reached": "entry_3",
        }
    )
    doc = enrolment_document(completed, NOW)
    assert doc["status"] == "completed" and doc["completion_status"] == 2
    assert doc["lifecycle"] == {
        "status_since": "2026-02-20",
        "outcome": 1,
        "level_reached": "entry_3",
        "ended_on": "2026-02-20",
        "withdrawal_reason": None,
        "expected_return_on": None,
    }
    assert type(doc["lifecycle"]["outcome"]) is int
    assert [h["kind"] for h in doc["history"]] == ["accepted", "completion"]
    assert doc["history"][1] == {
        "kind": "completion",
        "on": "2026-02-20",
        "status": "completed",
        "at": NOW,
    }


def test_a_document_reads_back_as_the_enrolment_it_was_written_from() -> None:
    later = datetime(2026, 3, 1, tzinfo=UTC)
    for enrolment in (
        enrolment_after(),
        enrolment_after(
            {"kind": "break", "started_on": "2025-11-03", "expected_return_on": "2026-01-05"}
        ),
        enrolment_after({"kind": "withdrawal", "withdrawn_on": "2025-12-01", "reason": 3}),
    ):
        doc = as_read_back(enrolment_document(enrolment, later))
        back = enrolment_from_document(doc)
        assert back.lifecycle == enrolment.lifecycle
        assert [(h.kind, h.on, h.status) for h in back.history] == [
            (h.kind, h.on, h.status) for h in enrolment.history
        ]
        assert back.submission == enrolment.submission
        assert back.applied_progress == enrolment.applied_progress
