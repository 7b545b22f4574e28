"""The enrolment: its ILR lifecycle state, its history, and accepting a checked
submission into a new enrolment with the events that announce it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from services.enrolment.domain.pseudonyms import Pseudonymiser, submission_fingerprint
from services.enrolment.domain.submission import Provider, age_band
from shared.cloudevents import Event
from shared.contracts.enrolment import (
    Background,
    EnrolmentAccepted,
    EnrolmentSubmission,
    ParticipantOptedIn,
)
from shared.contracts.reference import (
    AgeBand,
    CompletionStatus,
    Level,
    Outcome,
    WithdrawalReason,
)

# ----------------------------------------------------------------------------- lifecycle


class Status(StrEnum):
    CONTINUING = "continuing"
    BREAK = "break"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


COMPLETION_STATUS: Mapping[Status, CompletionStatus] = {
    Status.CONTINUING: CompletionStatus.CONTINUING,
    Status.BREAK: CompletionStatus.BREAK,
    Status.COMPLETED: CompletionStatus.COMPLETED,
    Status.WITHDRAWN: CompletionStatus.WITHDRAWN,
}

TERMINAL = frozenset({Status.COMPLETED, Status.WITHDRAWN})


@dataclass(frozen=True)
class Lifecycle:
    status: Status
    status_since: date
    outcome: Outcome | None = None
    level_reached: Level | None = None
    ended_on: date | None = None
    withdrawal_reason: WithdrawalReason | None = None
    expected_return_on: date | None = None

    @property
    def completion_status(self) -> CompletionStatus:
        return COMPLETION_STATUS[self.status]

    @classmethod
    def started(cls, start_date: date) -> Lifecycle:
        return cls(status=Status.CONTINUING, status_since=start_date)


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    on: date
    status: Status
    recorded_at: datetime


@dataclass(frozen=True)
class Enrolment:
    """One enrolment: the validated submission (kept only in this service) and its state."""

    enrolment_id: str
    provider_id: str
    provider_ukprn: str
    learner: str
    submission: EnrolmentSubmission
    fingerprint: str
    age_band: AgeBand
    lifecycle: Lifecycle
    accepted_at: datetime
    version: int = 0
    applied_progress: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def ref(self) -> dict[str, Any]:
        """The :class:`EnrolmentRef` fields every event repeats."""
        s = self.submission
        return {
            "enrolment_id": self.enrolment_id,
            "learner": self.learner,
            "provider_ukprn": self.provider_ukprn,
            "combined_authority": s.combined_authority,
            "local_authority": s.local_authority,
            "programme": s.programme,
            "level": s.level,
            "consent": s.consent,
        }


def background_of(submission: EnrolmentSubmission) -> Background:
    return Background(
        ethnicity=submission.ethnicity,
        religion=submission.religion,
        country_of_birth=submission.country_of_birth,
        first_language=submission.first_language,
        year_of_arrival=submission.year_of_arrival,
    )


def accept(
    submission: EnrolmentSubmission,
    provider: Provider,
    pseudonyms: Pseudonymiser,
    now: datetime,
) -> tuple[Enrolment, list[Event]]:
    """A checked submission → the new enrolment and the events announcing it.

    ``ParticipantOptedIn`` carries ``background`` only with ``consent.matching``.
    """
    band = age_band(submission.date_of_birth, submission.start_date)
    if band is None:  # check_submission refuses these; guard the invariant anyway
        raise ValueError("accept() needs a checked submission (learner under 16)")
    enrolment = Enrolment(
        enrolment_id=pseudonyms.enrolment_id(provider.ukprn, submission),
        provider_id=provider.provider_id,
        provider_ukprn=provider.ukprn,
        learner=pseudonyms.learner(provider.ukprn, submission.learner_ref),
        submission=submission,
        fingerprint=submission_fingerprint(submission),
        age_band=band,
        lifecycle=Lifecycle.started(submission.start_date),
        accepted_at=now,
        history=(HistoryEntry("accepted", submission.start_date, Status.CONTINUING, now),),
    )
    background = background_of(submission)
    events: list[Event] = [
        EnrolmentAccepted(
            **enrolment.ref(),
            learning_aim_ref=submission.learning_aim_ref,
            start_date=submission.start_date,
            planned_end_date=submission.planned_end_date,
            planned_hours=submission.planned_hours,
            fund_model=submission.fund_model,
            age_band=band,
            sex=submission.sex,
            background=background,
            wants_conversation_partner=submission.wants_conversation_partner,
            accepted_at=now,
        )
    ]
    if submission.wants_conversation_partner:
        events.append(
            ParticipantOptedIn(
                **enrolment.ref(),
                age_band=band,
                sex=submission.sex,
                languages=(submission.first_language,) if submission.first_language else (),
                availability=submission.availability,
                interests=submission.interests,
                gender_preference=submission.partner_gender_preference,
                background=background if submission.consent.matching else None,
                opted_in_at=now,
            )
        )
    return enrolment, events
