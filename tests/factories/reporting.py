"""Builders of contract events for the reporting tests (pure: no I/O).

Used by the unit, integration, reliability, security and e2e tests and by bench/. Every
builder takes the facts a test cares about and fills the rest with valid values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import (
    AssessmentRecorded,
    AttendanceRecorded,
    Background,
    Consent,
    EnrolmentAccepted,
    EnrolmentCompleted,
    EnrolmentWithdrawn,
    ParticipantOptedIn,
)
from shared.contracts.matching import (
    MatchCheckInRecorded,
    MatchConfirmed,
    MatchDeclined,
    MatchEnded,
    MatchProposed,
)
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    FundModel,
    Level,
    Outcome,
    Programme,
    Sex,
    WithdrawalReason,
    combined_authority_of,
)

GM = CombinedAuthority.GREATER_MANCHESTER
MANCHESTER, OLDHAM, WIGAN = "E08000003", "E08000004", "E08000010"
SOURCE = "/tests/reporting"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ref_of(e: EnrolmentAccepted) -> dict[str, Any]:
    return {
        "enrolment_id": e.enrolment_id,
        "learner": e.learner,
        "provider_ukprn": e.provider_ukprn,
        "combined_authority": e.combined_authority,
        "local_authority": e.local_authority,
        "programme": e.programme,
        "level": e.level,
        "consent": e.consent,
    }


def accepted(
    *,
    la: str = MANCHESTER,
    programme: Programme = Programme.ESOL,
    level: Level | None = Level.ENTRY_1,
    start: date = date(2025, 1, 15),
    ethnicity: Ethnicity | None = None,
    learner: str | None = None,
    enrolment_id: str | None = None,
) -> EnrolmentAccepted:
    ca = combined_authority_of(la)
    assert ca is not None
    return EnrolmentAccepted(
        enrolment_id=enrolment_id or uid("enr"),
        learner=learner or uid("lrn"),
        provider_ukprn="10000001",
        combined_authority=ca,
        local_authority=la,
        programme=programme,
        level=level,
        consent=Consent(matching=True),
        learning_aim_ref="ZESOL001",
        start_date=start,
        planned_end_date=start + timedelta(days=180),
        planned_hours=120,
        fund_model=FundModel.ADULT_SKILLS,
        age_band=AgeBand.AGE_25_34,
        sex=Sex.FEMALE,
        background=Background(ethnicity=ethnicity),
        accepted_at=datetime.combine(start, datetime.min.time(), UTC),
    )


def completed(
    e: EnrolmentAccepted,
    outcome: Outcome = Outcome.ACHIEVED,
    level_reached: Level | None = None,
) -> EnrolmentCompleted:
    return EnrolmentCompleted(
        **ref_of(e),
        completed_on=e.planned_end_date,
        outcome=outcome,
        level_reached=level_reached,
    )


def withdrawn(
    e: EnrolmentAccepted, reason: WithdrawalReason = WithdrawalReason.HEALTH
) -> EnrolmentWithdrawn:
    return EnrolmentWithdrawn(
        **ref_of(e), withdrawn_on=e.start_date + timedelta(days=30), reason=reason
    )


def assessed(e: EnrolmentAccepted, level_reached: Level) -> AssessmentRecorded:
    return AssessmentRecorded(
        **ref_of(e), assessed_on=e.start_date + timedelta(days=60), level_reached=level_reached
    )


def attendance(e: EnrolmentAccepted, planned: int, attended: int) -> AttendanceRecorded:
    return AttendanceRecorded(
        **ref_of(e),
        period_start=e.start_date,
        period_end=e.start_date + timedelta(days=27),
        sessions_planned=planned,
        sessions_attended=attended,
    )


def opted_in(
    e: EnrolmentAccepted,
    at: datetime | None = None,
    *,
    age_band: AgeBand = AgeBand.AGE_25_34,
    sex: Sex | None = None,
) -> ParticipantOptedIn:
    return ParticipantOptedIn(
        **ref_of(e),
        age_band=age_band,
        sex=sex,
        opted_in_at=at or datetime.combine(e.start_date, datetime.min.time(), UTC),
    )


@dataclass
class Pair:
    """A match between a volunteer and the learner of an enrolment."""

    enrolment: EnrolmentAccepted
    match_id: str = field(default_factory=lambda: uid("match"))
    volunteer_id: str = field(default_factory=lambda: uid("vol"))

    def ref(self) -> dict[str, Any]:
        e = self.enrolment
        return {
            "match_id": self.match_id,
            "volunteer_id": self.volunteer_id,
            "participant": e.learner,
            "enrolment_id": e.enrolment_id,
            "combined_authority": e.combined_authority,
            "local_authority": e.local_authority,
        }

    def waited_since(self) -> datetime:
        return datetime.combine(self.enrolment.start_date, datetime.min.time(), UTC)

    def proposed(self, after_days: float = 1) -> MatchProposed:
        return MatchProposed(
            **self.ref(),
            score=0.8,
            explanation="shared availability; differs in background",
            waited_since=self.waited_since(),
            proposed_at=self.waited_since() + timedelta(days=after_days),
        )

    def confirmed(self, after_days: float, cross_background: bool = True) -> MatchConfirmed:
        return MatchConfirmed(
            **self.ref(),
            cross_background=cross_background,
            waited_since=self.waited_since(),
            confirmed_at=self.waited_since() + timedelta(days=after_days),
        )

    def declined(self, after_days: float = 2) -> MatchDeclined:
        return MatchDeclined(
            **self.ref(),
            reason="schedule",
            declined_at=self.waited_since() + timedelta(days=after_days),
        )

    def ended(self, after_days: float = 90) -> MatchEnded:
        return MatchEnded(
            **self.ref(),
            reason="programme finished",
            meetings_count=8,
            ended_at=self.waited_since() + timedelta(days=after_days),
        )

    def checked_in(self, confirmed_after_days: float, met_days_in: int) -> MatchCheckInRecorded:
        """A meeting ``met_days_in`` days after the match was confirmed (which happened
        ``confirmed_after_days`` after the participant started waiting)."""
        started = self.waited_since() + timedelta(days=confirmed_after_days)
        met_on = started.date() + timedelta(days=met_days_in)
        return MatchCheckInRecorded(
            **self.ref(),
            check_in_id=f"checkin-{self.match_id}-{met_on:%Y%m%d}",
            met_on=met_on,
            match_started_at=started,
            recorded_by="coordinator",
            recorded_at=started + timedelta(days=met_days_in),
        )


def cloud(event: Event, ce_id: str | None = None) -> CloudEvent[Event]:
    return CloudEvent(data=event, source=SOURCE, id=ce_id or str(uuid.uuid4()))


@dataclass(frozen=True)
class FakeRecord:
    """An aiokafka ConsumerRecord look-alike for unit tests."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def record_of(ce: CloudEvent[Event], topic: str, offset: int, partition: int = 0) -> FakeRecord:
    return FakeRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=b"k",
        value=ce.body(),
        headers=tuple((k, v.encode()) for k, v in ce.headers().items()),
    )
