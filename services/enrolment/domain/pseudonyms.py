"""Pseudonyms and content fingerprints: keyed, stable, not reversible without the key."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import date

from pydantic import BaseModel

from shared.contracts.enrolment import (
    EnrolmentSubmission,
)


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed HMAC-SHA256 pseudonyms. Stable for a given key; not reversible without it.

    Learner refs are unique only within a provider (ILR LearnRefNumber), so both the
    learner pseudonym and the enrolment id are scoped by the provider's UKPRN.
    """

    key: bytes = field(repr=False)

    def _mac(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def learner(self, ukprn: str, learner_ref: str) -> str:
        return "lp_" + self._mac("learner", ukprn, learner_ref)[:32]

    def enrolment_id(self, ukprn: str, submission: EnrolmentSubmission) -> str:
        """Deterministic id of the natural key (provider, learner, aim, start date): the
        same submission always maps to the same enrolment, whatever the channel."""
        return self.enrolment_id_of(
            ukprn, submission.learner_ref, submission.learning_aim_ref, submission.start_date
        )

    def enrolment_id_of(
        self, ukprn: str, learner_ref: str, learning_aim_ref: str, start_date: date
    ) -> str:
        """The enrolment id of a natural key (ILR intake knows it before a submission)."""
        return (
            "enr_"
            + self._mac(
                "enrolment", ukprn, learner_ref, learning_aim_ref.upper(), start_date.isoformat()
            )[:32]
        )


def fingerprint(model: BaseModel, *, exclude: set[str] | None = None) -> str:
    """A content hash (for "same submission again?" checks); kept only in our database."""
    canonical = json.dumps(
        model.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def submission_fingerprint(submission: EnrolmentSubmission) -> str:
    return fingerprint(submission, exclude={"submission_ref"})
