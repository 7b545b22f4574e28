"""Read-model projection: pure logic, no I/O.

Every read model is a function of *current states*: one state per enrolment, per match
and per participant (learner who may opt in to befriending). An aggregate document is
the sum of the *contributions* of the states that fall in its key. So a batch of events
changes the aggregates by exactly ``Σ contribution(new state) - contribution(old state)``
over the states it touched, which:

* lets a batch be pre-aggregated in memory and applied as one ``$inc`` per aggregate key;
* makes the result independent of how the log was cut into batches and of how the two
  topics interleaved, so a rebuild from the beginning gives the same documents as the
  live projection (the states themselves are built from per-entity ordered events and
  commutative cross-topic facts).

Apply functions never raise for a decodable, validated event; :func:`validate_event`
holds the stateless checks that make an event poison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

from services.reporting.domain.integration_facts import (
    BRIDGE_BASE_FIELDS,
    BRIDGE_DIMS,
    BRIDGE_MARKS,
    WAITING_GROUP_BASE_FIELDS,
    WAITING_GROUP_DIMS,
    earlier,
    ended_before_mark,
    met_in_window,
)
from services.reporting.domain.qar import QAR_BASE_FIELDS, QAR_DIMS, QarAim, qar_contribution
from shared.cloudevents import Event
from shared.contracts.enrolment import (
    AssessmentRecorded,
    AttendanceRecorded,
    BreakInLearningStarted,
    EnrolmentAccepted,
    EnrolmentCompleted,
    EnrolmentRef,
    EnrolmentWithdrawn,
    LearnerErased,
    LearningResumed,
    OutcomeRecorded,
    ParticipantOptedIn,
)
from shared.contracts.matching import (
    MatchCheckInRecorded,
    MatchConfirmed,
    MatchDeclined,
    MatchEnded,
    MatchProposed,
    MatchRef,
)
from shared.contracts.reference import (
    ESOL_LEVELS,
    LOCAL_AUTHORITIES,
    CompletionStatus,
    Ethnicity,
    Level,
    Outcome,
    Programme,
    WithdrawalReason,
)

NO_LEVEL = "none"
NOT_STATED = "not_stated"

# ---------------------------------------------------------------------------------------
# Aggregate collections: their key dimensions and counter fields (in canonical order:
# every write names every field, so each document has the same shape however it was built).

OUTCOME_DIMS: tuple[str, ...] = (
    "combined_authority",
    "local_authority",
    "programme",
    "level",
    "month",
)
EQUALITY_DIMS: tuple[str, ...] = (*OUTCOME_DIMS, "ethnicity")
MATCH_DIMS: tuple[str, ...] = ("combined_authority", "local_authority", "month")
PARTICIPANT_DIMS: tuple[str, ...] = ("combined_authority", "local_authority", "month")

WITHDRAWAL_FIELDS: dict[WithdrawalReason, str] = {
    r: f"withdrawn_reason_{r.value}" for r in WithdrawalReason
}

OUTCOME_BASE_FIELDS: tuple[str, ...] = (
    "started",
    "withdrawn",
    "completed",
    "on_break",
    "achieved",
    "partial",
    "not_achieved",
    "sessions_planned",
    "sessions_attended",
    "esol_assessed",
    "esol_progressed",
    "opted_in",
    "matched_started",
    "matched_withdrawn",
    "matched_completed",
    "matched_achieved",
    "matched_esol_assessed",
    "matched_esol_progressed",
    *WITHDRAWAL_FIELDS.values(),
)
EQUALITY_BASE_FIELDS: tuple[str, ...] = (
    "started",
    "withdrawn",
    "completed",
    "on_break",
    "achieved",
    "esol_assessed",
    "esol_progressed",
)
MATCH_BASE_FIELDS: tuple[str, ...] = (
    "proposed",
    "confirmed",
    "cross_background",
    "declined",
    "ended",
)
PARTICIPANT_BASE_FIELDS: tuple[str, ...] = ("opted_in", "waiting", "matched")

# Record keys (cell-key perturbation, see domain/disclosure.py and docs/disclosure.md).
# Every counter of records that a report publishes has a companion ``ck_<counter>``: the
# sum of the record keys of the records it counts. A record's key is fixed by its id
# (so identical after a rebuild and on every instance) and moves with the record: a
# contribution carries ``ck_completed = key`` exactly when it carries ``completed = 1``.
# Sums are kept whole (not reduced mod 256) so that they stay ``$inc``-able and derived
# cells (stayed = started - withdrawn) have exact key sums too.
CELL_KEY_PREFIX = "ck_"
RECORD_KEY_SALT = b"commonground/reporting/record-key/v1:"
OUTCOME_KEYED: tuple[str, ...] = (
    "started",
    "withdrawn",
    "completed",
    "on_break",
    "achieved",
    "esol_assessed",
    "esol_progressed",
    "matched_started",
    "matched_withdrawn",
    "matched_completed",
    "matched_achieved",
    "matched_esol_assessed",
    "matched_esol_progressed",
    *WITHDRAWAL_FIELDS.values(),
)


def ck(name: str) -> str:
    """The key-sum companion of counter ``name``."""
    return CELL_KEY_PREFIX + name


def record_key(kind: str, record_id: str) -> int:
    """A record's key in 0..255, fixed by its id: the first byte of SHA-256 of a fixed
    platform salt, the record kind and its id. Not secret by itself: the deployment's
    secret permutes cell keys when reports are published (domain/disclosure.py)."""
    digest = hashlib.sha256(RECORD_KEY_SALT + f"{kind}:{record_id}".encode()).digest()
    return digest[0]


OUTCOME_FIELDS: tuple[str, ...] = (*OUTCOME_BASE_FIELDS, *(ck(f) for f in OUTCOME_KEYED))
EQUALITY_FIELDS: tuple[str, ...] = (
    *EQUALITY_BASE_FIELDS,
    *(ck(f) for f in EQUALITY_BASE_FIELDS),
)
MATCH_FIELDS: tuple[str, ...] = MATCH_BASE_FIELDS
MATCH_AGG_FIELDS: tuple[str, ...] = (*MATCH_BASE_FIELDS, *(ck(f) for f in MATCH_BASE_FIELDS))
PARTICIPANT_FIELDS: tuple[str, ...] = PARTICIPANT_BASE_FIELDS
PARTICIPANT_AGG_FIELDS: tuple[str, ...] = (
    *PARTICIPANT_BASE_FIELDS,
    *(ck(f) for f in PARTICIPANT_BASE_FIELDS),
)


def with_keys(counts: Counts, keyed: Iterable[str], key: int) -> Counts:
    """``counts`` plus ``ck_<f> = key`` for every keyed counter ``f`` it counts."""
    for name in keyed:
        if counts.get(name):
            counts[ck(name)] = key * counts[name]
    return counts


BRIDGE_AGG_FIELDS: tuple[str, ...] = (*BRIDGE_BASE_FIELDS, *(ck(f) for f in BRIDGE_BASE_FIELDS))
WAITING_GROUP_AGG_FIELDS: tuple[str, ...] = (
    *WAITING_GROUP_BASE_FIELDS,
    *(ck(f) for f in WAITING_GROUP_BASE_FIELDS),
)

ESOL_BRIDGED_DIMS: tuple[str, ...] = ("combined_authority", "local_authority", "level", "month")
ESOL_BRIDGED_BASE_FIELDS: tuple[str, ...] = ("started", "withdrawn", "completed", "achieved")
ESOL_BRIDGED_AGG_FIELDS: tuple[str, ...] = (
    *ESOL_BRIDGED_BASE_FIELDS,
    *(ck(f) for f in ESOL_BRIDGED_BASE_FIELDS),
)

# QAR cohort counters (issue 15, domain/qar.py), each with its record-key sum.
QAR_FIELDS: tuple[str, ...] = (*QAR_BASE_FIELDS, *(ck(f) for f in QAR_BASE_FIELDS))

AggregateName = Literal[
    "outcomes",
    "equality",
    "matching",
    "participants",
    "bridges",
    "waiting_groups",
    "esol_bridged",
    "qar",
]


@dataclass(frozen=True)
class AggregateSpec:
    name: AggregateName
    dims: tuple[str, ...]
    fields: tuple[str, ...]


AGGREGATES: dict[AggregateName, AggregateSpec] = {
    "outcomes": AggregateSpec("outcomes", OUTCOME_DIMS, OUTCOME_FIELDS),
    "equality": AggregateSpec("equality", EQUALITY_DIMS, EQUALITY_FIELDS),
    "matching": AggregateSpec("matching", MATCH_DIMS, MATCH_AGG_FIELDS),
    "participants": AggregateSpec("participants", PARTICIPANT_DIMS, PARTICIPANT_AGG_FIELDS),
    # Issue 16 (domain/integration_facts.py): lasting bridges, who is left waiting.
    "bridges": AggregateSpec("bridges", BRIDGE_DIMS, BRIDGE_AGG_FIELDS),
    "waiting_groups": AggregateSpec("waiting_groups", WAITING_GROUP_DIMS, WAITING_GROUP_AGG_FIELDS),
    # ESOL enrolments of learners with a confirmed cross-background match.
    "esol_bridged": AggregateSpec("esol_bridged", ESOL_BRIDGED_DIMS, ESOL_BRIDGED_AGG_FIELDS),
    # Issue 15 (domain/qar.py): QAR cohort counters by hybrid end year.
    "qar": AggregateSpec("qar", QAR_DIMS, QAR_FIELDS),
}

AggregateKey = tuple[AggregateName, tuple[str, ...]]
Counts = dict[str, int]


def aggregate_key(name: AggregateName, where: Mapping[str, str]) -> AggregateKey:
    """The key of aggregate ``name`` for a record whose dimension values are ``where``."""
    return name, tuple(where[dim] for dim in AGGREGATES[name].dims)


def aggregate_id(key: tuple[str, ...]) -> str:
    return "|".join(key)


def month_of(day: date | datetime) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def esol_rank(level: str | None) -> int | None:
    """Position of an ESOL level in :data:`ESOL_LEVELS` (None for other levels)."""
    if level is None:
        return None
    try:
        return ESOL_LEVELS.index(Level(level))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------
# Current states. Plain frozen dataclasses whose ``asdict`` is the stored document
# (field order fixed by the class, so stored documents are canonical too).


@dataclass(frozen=True)
class EnrolmentState:
    enrolment_id: str
    learner: str
    provider_ukprn: str
    combined_authority: str
    local_authority: str
    programme: str
    level: str | None = None
    accepted: bool = False
    start_month: str | None = None
    ethnicity: str | None = None
    age_band: str | None = None
    sex: str | None = None
    status: int = CompletionStatus.CONTINUING.value
    outcome: int | None = None
    withdrawal_reason: int | None = None
    level_reached: str | None = None
    sessions_planned: int = 0
    sessions_attended: int = 0
    opted_in: bool = False
    start_date: str | None = None
    progressed_on: str | None = None
    """ESOL: the first day a level above the starting level was recorded (ISO)."""
    # For the QAR measures (issue 15, domain/qar.py): ISO days.
    planned_end_date: str | None = None
    ended_on: str | None = None
    break_on: str | None = None

    @classmethod
    def new(cls, ref: EnrolmentRef) -> EnrolmentState:
        return cls(
            enrolment_id=ref.enrolment_id,
            learner=ref.learner,
            provider_ukprn=ref.provider_ukprn,
            combined_authority=ref.combined_authority.value,
            local_authority=ref.local_authority,
            programme=ref.programme.value,
            level=ref.level.value if ref.level else None,
        )


@dataclass(frozen=True)
class ParticipantState:
    """A learner as a potential befriending participant (keyed by learner pseudonym)."""

    learner: str
    opted_in: bool = False
    combined_authority: str | None = None
    local_authority: str | None = None
    opted_in_month: str | None = None
    matched: bool = False
    age_band: str | None = None
    sex: str | None = None
    ethnic_group: str | None = None
    """ONS high-level group from the learner's enrolment (equality monitoring only)."""
    first_confirmed_at: str | None = None
    first_wait_days: float | None = None
    """Days from waited_since to the first confirmed match (the earliest confirmation)."""
    bridged: bool = False
    """Had a confirmed cross-background match."""

    @property
    def waiting(self) -> bool:
        return self.opted_in and not self.matched


@dataclass(frozen=True)
class MatchState:
    match_id: str
    volunteer_id: str
    participant: str
    enrolment_id: str | None
    combined_authority: str
    local_authority: str
    status: str = "unknown"
    proposed_month: str | None = None
    confirmed_month: str | None = None
    declined_month: str | None = None
    ended_month: str | None = None
    cross_background: bool | None = None
    wait_days: float | None = None
    meetings_count: int | None = None
    confirmed_on: str | None = None
    ended_on: str | None = None
    met_6w: bool = False
    met_6m: bool = False
    """A meeting was recorded in the activity window before the 6-week / 6-month mark."""

    @classmethod
    def new(cls, ref: MatchRef) -> MatchState:
        return cls(
            match_id=ref.match_id,
            volunteer_id=ref.volunteer_id,
            participant=ref.participant,
            enrolment_id=ref.enrolment_id,
            combined_authority=ref.combined_authority.value,
            local_authority=ref.local_authority,
        )


def state_to_doc(state: EnrolmentState | ParticipantState | MatchState) -> dict[str, Any]:
    doc = asdict(state)
    key = {
        EnrolmentState: "enrolment_id",
        ParticipantState: "learner",
        MatchState: "match_id",
    }[type(state)]
    return {"_id": doc[key], **doc}


def enrolment_from_doc(doc: Mapping[str, Any]) -> EnrolmentState:
    return EnrolmentState(**{k: v for k, v in doc.items() if k != "_id"})


def participant_from_doc(doc: Mapping[str, Any]) -> ParticipantState:
    return ParticipantState(**{k: v for k, v in doc.items() if k != "_id"})


def match_from_doc(doc: Mapping[str, Any]) -> MatchState:
    return MatchState(**{k: v for k, v in doc.items() if k != "_id"})


# ---------------------------------------------------------------------------------------
# Validation (stateless): what makes a decodable event poison for reporting.


class InvalidEvent(ValueError):
    """A well-formed event that reporting cannot use (dead-lettered, never retried)."""


def validate_event(event: Event) -> None:
    if isinstance(event, EnrolmentRef | MatchRef):
        las = LOCAL_AUTHORITIES.get(event.combined_authority, {})
        if event.local_authority not in las:
            raise InvalidEvent(
                f"local authority {event.local_authority!r} does not belong to combined "
                f"authority {event.combined_authority.value}"
            )
    if isinstance(event, AttendanceRecorded) and (
        event.sessions_planned < 0 or event.sessions_attended < 0
    ):
        raise InvalidEvent("attendance session counts cannot be negative")
    if isinstance(event, MatchConfirmed) and event.confirmed_at < event.waited_since:
        raise InvalidEvent("confirmed_at is before waited_since")


def is_consumed(event: Event) -> bool:
    """Events that change a read model (others, e.g. future additive types, are skipped)."""
    return isinstance(
        event,
        EnrolmentAccepted
        | AttendanceRecorded
        | AssessmentRecorded
        | EnrolmentCompleted
        | EnrolmentWithdrawn
        | ParticipantOptedIn
        | BreakInLearningStarted
        | LearningResumed
        | OutcomeRecorded
        | MatchProposed
        | MatchConfirmed
        | MatchDeclined
        | MatchEnded
        | MatchCheckInRecorded
        | LearnerErased,
    )


# ---------------------------------------------------------------------------------------
# Applying events to states.


def _higher_level(current: str | None, reached: Level | None) -> str | None:
    if reached is None:
        return current
    if current is None:
        return reached.value
    new_rank, cur_rank = esol_rank(reached.value), esol_rank(current)
    if new_rank is None or cur_rank is None:
        return reached.value if cur_rank is None else current
    return reached.value if new_rank > cur_rank else current


def apply_to_enrolment(state: EnrolmentState | None, event: EnrolmentRef) -> EnrolmentState:
    s = state or EnrolmentState.new(event)
    if isinstance(event, EnrolmentAccepted):
        # Dimensions are fixed by the acceptance: later events repeat them but never move
        # an enrolment between aggregate keys.
        return replace(
            s,
            learner=event.learner,
            provider_ukprn=event.provider_ukprn,
            combined_authority=event.combined_authority.value,
            local_authority=event.local_authority,
            programme=event.programme.value,
            level=event.level.value if event.level else None,
            accepted=True,
            start_month=month_of(event.start_date),
            ethnicity=event.background.ethnicity.value if event.background.ethnicity else None,
            age_band=event.age_band.value,
            sex=event.sex.value if event.sex else None,
            start_date=event.start_date.isoformat(),
            planned_end_date=event.planned_end_date.isoformat(),
        )
    if isinstance(event, AttendanceRecorded):
        return replace(
            s,
            sessions_planned=s.sessions_planned + event.sessions_planned,
            sessions_attended=s.sessions_attended + event.sessions_attended,
        )
    if isinstance(event, AssessmentRecorded):
        return replace(
            s,
            level_reached=_higher_level(s.level_reached, event.level_reached),
            progressed_on=_progressed(s, event.level_reached, event.assessed_on),
        )
    if isinstance(event, EnrolmentCompleted):
        return replace(
            s,
            status=event.completion_status.value,
            outcome=event.outcome.value,
            level_reached=_higher_level(s.level_reached, event.level_reached),
            progressed_on=_progressed(s, event.level_reached, event.completed_on),
            ended_on=event.completed_on.isoformat(),
        )
    if isinstance(event, EnrolmentWithdrawn):
        return replace(
            s,
            status=CompletionStatus.WITHDRAWN.value,
            withdrawal_reason=event.reason.value,
            ended_on=event.withdrawn_on.isoformat(),
        )
    if isinstance(event, ParticipantOptedIn):
        return replace(s, opted_in=True)
    finished = s.status in (CompletionStatus.COMPLETED, CompletionStatus.WITHDRAWN)
    if isinstance(event, BreakInLearningStarted):
        if finished:
            return s
        on = event.break_started_on.isoformat()
        return replace(s, status=CompletionStatus.BREAK.value, break_on=on)
    if isinstance(event, LearningResumed):
        if finished:
            return s
        return replace(s, status=CompletionStatus.CONTINUING.value, break_on=None)
    if isinstance(event, OutcomeRecorded):
        return replace(
            s,
            outcome=event.outcome.value,
            level_reached=_higher_level(s.level_reached, event.level_reached),
            progressed_on=_progressed(s, event.level_reached, event.recorded_on),
        )
    return s


def _progressed(s: EnrolmentState, reached: Level | None, on: date) -> str | None:
    """ESOL: the earliest day a level above the starting level was recorded."""
    start, rank = esol_rank(s.level), esol_rank(reached.value if reached else None)
    if s.programme != Programme.ESOL or start is None or rank is None or rank <= start:
        return s.progressed_on
    return earlier(s.progressed_on, on)


def apply_to_participant(
    state: ParticipantState | None,
    event: ParticipantOptedIn | MatchConfirmed,
    ethnicity: str | None = None,
) -> ParticipantState:
    """``ethnicity``: of the opt-in's enrolment (aggregate equality monitoring only)."""
    if isinstance(event, ParticipantOptedIn):
        s = state or ParticipantState(learner=event.learner)
        if s.opted_in:
            return s
        return replace(
            s,
            opted_in=True,
            combined_authority=event.combined_authority.value,
            local_authority=event.local_authority,
            opted_in_month=month_of(event.opted_in_at),
            age_band=event.age_band.value,
            sex=event.sex.value if event.sex else None,
            ethnic_group=Ethnicity(ethnicity).group if ethnicity else None,
        )
    s = state or ParticipantState(learner=event.participant)
    s = replace(s, matched=True, bridged=s.bridged or event.cross_background)
    confirmed_at = event.confirmed_at.astimezone(UTC).isoformat()
    if s.first_confirmed_at is not None and s.first_confirmed_at <= confirmed_at:
        return s
    wait = (event.confirmed_at - event.waited_since).total_seconds() / 86400
    return replace(s, first_confirmed_at=confirmed_at, first_wait_days=round(wait, 4))


def apply_to_match(state: MatchState | None, event: MatchRef) -> MatchState:
    s = state or MatchState.new(event)
    if isinstance(event, MatchProposed):
        return replace(
            s,
            status=s.status if s.status != "unknown" else "proposed",
            proposed_month=month_of(event.proposed_at),
        )
    if isinstance(event, MatchConfirmed):
        wait = (event.confirmed_at - event.waited_since).total_seconds() / 86400
        return replace(
            s,
            status="confirmed" if s.status in ("unknown", "proposed") else s.status,
            confirmed_month=month_of(event.confirmed_at),
            cross_background=event.cross_background,
            wait_days=round(wait, 4),
            confirmed_on=event.confirmed_at.date().isoformat(),
        )
    if isinstance(event, MatchDeclined):
        return replace(s, status="declined", declined_month=month_of(event.declined_at))
    if isinstance(event, MatchEnded):
        return replace(
            s,
            status="ended",
            ended_month=month_of(event.ended_at),
            meetings_count=event.meetings_count,
            ended_on=event.ended_at.date().isoformat(),
        )
    if isinstance(event, MatchCheckInRecorded):
        started = event.match_started_at.date()
        return replace(
            s,
            met_6w=s.met_6w or met_in_window(started, event.met_on, BRIDGE_MARKS["6w"]),
            met_6m=s.met_6m or met_in_window(started, event.met_on, BRIDGE_MARKS["6m"]),
        )
    return s


# ---------------------------------------------------------------------------------------
# Contributions of a state to the aggregates.


def enrolment_contributions(
    s: EnrolmentState, learner_matched: bool, learner_bridged: bool = False
) -> Iterator[tuple[AggregateKey, Counts]]:
    """``learner_bridged``: the learner had a confirmed cross-background match."""
    if not s.accepted or s.start_month is None:
        return
    level = s.level or NO_LEVEL
    c: Counts = {"started": 1}
    if s.status == CompletionStatus.WITHDRAWN:
        c["withdrawn"] = 1
        if s.withdrawal_reason is not None:
            c[WITHDRAWAL_FIELDS[WithdrawalReason(s.withdrawal_reason)]] = 1
    elif s.status == CompletionStatus.COMPLETED:
        c["completed"] = 1
    elif s.status == CompletionStatus.BREAK:
        c["on_break"] = 1
    if s.status == CompletionStatus.COMPLETED and s.outcome is not None:
        outcome_field = {
            Outcome.ACHIEVED: "achieved",
            Outcome.PARTIAL: "partial",
            Outcome.NOT_ACHIEVED: "not_achieved",
        }.get(Outcome(s.outcome))
        if outcome_field:
            c[outcome_field] = 1
    c["sessions_planned"] = s.sessions_planned
    c["sessions_attended"] = s.sessions_attended
    if s.programme == Programme.ESOL and s.level_reached is not None:
        start, reached = esol_rank(s.level), esol_rank(s.level_reached)
        if start is not None and reached is not None:
            c["esol_assessed"] = 1
            if reached > start:
                c["esol_progressed"] = 1
    if s.opted_in:
        c["opted_in"] = 1
    if learner_matched:
        for name in ("started", "withdrawn", "completed", "achieved"):
            if c.get(name):
                c[f"matched_{name}"] = 1
        for name in ("esol_assessed", "esol_progressed"):
            if c.get(name):
                c[f"matched_{name}"] = 1
    rk = record_key("enrolment", s.enrolment_id)
    with_keys(c, OUTCOME_KEYED, rk)
    # The enrolment's value of every dimension an aggregate may be keyed by; each
    # aggregate's key takes its own dimensions (AGGREGATES[name].dims) from here.
    where = {
        "combined_authority": s.combined_authority,
        "local_authority": s.local_authority,
        "programme": s.programme,
        "level": level,
        "month": s.start_month,
        "ethnicity": s.ethnicity or NOT_STATED,
    }
    yield aggregate_key("outcomes", where), c
    equality = with_keys(
        {f: c[f] for f in EQUALITY_BASE_FIELDS if c.get(f)}, EQUALITY_BASE_FIELDS, rk
    )
    yield aggregate_key("equality", where), equality
    qar = qar_contribution(qar_aim(s))
    if qar is not None:  # issue 15: the aim's QAR cohort, by hybrid end year
        year, counts = qar
        yield aggregate_key("qar", {**where, "year": year}), with_keys(counts, QAR_BASE_FIELDS, rk)
    if learner_bridged and s.programme == Programme.ESOL:
        bridged = {f: c[f] for f in ESOL_BRIDGED_BASE_FIELDS if c.get(f)}
        yield aggregate_key("esol_bridged", where), with_keys(bridged, ESOL_BRIDGED_BASE_FIELDS, rk)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def qar_aim(s: EnrolmentState) -> QarAim:
    """What the QAR rules need of an enrolment state."""
    return QarAim(
        status=s.status,
        start=_day(s.start_date),
        planned_end=_day(s.planned_end_date),
        ended_on=_day(s.ended_on),
        break_on=_day(s.break_on),
        outcome=s.outcome,
    )


def participant_contributions(s: ParticipantState) -> Iterator[tuple[AggregateKey, Counts]]:
    if (
        not s.opted_in
        or s.combined_authority is None
        or s.local_authority is None
        or s.opted_in_month is None
    ):
        return
    counts = {"opted_in": 1, "waiting": int(s.waiting), "matched": int(s.matched)}
    rk = record_key("learner", s.learner)
    where = (s.combined_authority, s.local_authority, s.opted_in_month)
    yield (("participants", where), with_keys(counts, PARTICIPANT_BASE_FIELDS, rk))
    group = (s.age_band or NOT_STATED, s.sex or NOT_STATED, s.ethnic_group or NOT_STATED)
    yield (
        ("waiting_groups", (*where, *group)),
        with_keys(dict(counts), WAITING_GROUP_BASE_FIELDS, rk),
    )


def match_contributions(s: MatchState) -> Iterator[tuple[AggregateKey, Counts]]:
    where = (s.combined_authority, s.local_authority)
    rk = record_key("match", s.match_id)

    def keyed(counts: Counts) -> Counts:
        return with_keys(counts, MATCH_BASE_FIELDS, rk)

    if s.proposed_month:
        yield ("matching", (*where, s.proposed_month)), keyed({"proposed": 1})
    if s.confirmed_month:
        yield (
            ("matching", (*where, s.confirmed_month)),
            keyed({"confirmed": 1, "cross_background": int(bool(s.cross_background))}),
        )
    if s.confirmed_month and s.confirmed_on:
        yield (
            ("bridges", (*where, s.confirmed_month)),
            with_keys(_bridge_counts(s), BRIDGE_BASE_FIELDS, rk),
        )
    if s.declined_month:
        yield ("matching", (*where, s.declined_month)), keyed({"declined": 1})
    if s.ended_month:
        yield ("matching", (*where, s.ended_month)), keyed({"ended": 1})


def _bridge_counts(s: MatchState) -> Counts:
    """A confirmed match in the lasting-bridges aggregate (domain/integration_facts.py)."""
    assert s.confirmed_on is not None
    c: Counts = {"confirmed": 1}
    if s.cross_background:
        c["cross_confirmed"] = 1
        for mark, met in (("6w", s.met_6w), ("6m", s.met_6m)):
            days = BRIDGE_MARKS[mark]
            if met and not ended_before_mark(s.confirmed_on, s.ended_on, days):
                c[f"cross_active_{mark}"] = 1
    return c


# ---------------------------------------------------------------------------------------
# A batch: loaded states + events → changed states + aggregate deltas.


@dataclass
class LoadedStates:
    """The current states a batch may touch, as read from the store."""

    enrolments: dict[str, EnrolmentState] = field(default_factory=dict)
    participants: dict[str, ParticipantState] = field(default_factory=dict)
    matches: dict[str, MatchState] = field(default_factory=dict)


@dataclass(frozen=True)
class StateKeys:
    """What to load for a batch: all enrolments of these learners (a learner becoming
    matched changes the contribution of every enrolment of theirs), these participants
    and these matches."""

    learners: frozenset[str]
    match_ids: frozenset[str]


def keys_needed(events: Iterable[Event]) -> StateKeys:
    learners: set[str] = set()
    match_ids: set[str] = set()
    for event in events:
        if isinstance(event, EnrolmentRef | LearnerErased):
            learners.add(event.learner)
        elif isinstance(event, MatchRef):
            match_ids.add(event.match_id)
            if isinstance(event, MatchConfirmed):
                learners.add(event.participant)
    return StateKeys(frozenset(learners), frozenset(match_ids))


@dataclass
class BatchOutcome:
    enrolments: dict[str, EnrolmentState]
    participants: dict[str, ParticipantState]
    matches: dict[str, MatchState]
    deltas: dict[AggregateKey, Counts]
    failed: list[tuple[int, Exception]]

    @property
    def decremented(self) -> set[AggregateKey]:
        """Keys that lost something: they may now be all zero (and are then deleted, so a
        document exists exactly when its counts are not all zero)."""
        return {k for k, c in self.deltas.items() if any(v < 0 for v in c.values())}


def _add(
    deltas: dict[AggregateKey, Counts], items: Iterable[tuple[AggregateKey, Counts]], sign: int
) -> None:
    for key, counts in items:
        target = deltas.setdefault(key, {})
        for name, value in counts.items():
            if value:
                target[name] = target.get(name, 0) + sign * value


def project_batch(loaded: LoadedStates, events: Sequence[Event]) -> BatchOutcome:
    """Apply ``events`` in order to ``loaded`` and pre-aggregate the effect.

    An event whose application raises (a bug, or data no validation foresaw) is reported
    in ``failed`` by index and leaves the states as they were; the rest still apply.
    """
    enrolments = dict(loaded.enrolments)
    participants = dict(loaded.participants)
    matches = dict(loaded.matches)
    failed: list[tuple[int, Exception]] = []
    for index, event in enumerate(events):
        try:
            # Compute every new state first, then assign: an event applies wholly or not at all.
            if isinstance(event, EnrolmentRef):
                new_enrolment = apply_to_enrolment(enrolments.get(event.enrolment_id), event)
                if isinstance(event, ParticipantOptedIn):
                    participants[event.learner] = apply_to_participant(
                        participants.get(event.learner), event, new_enrolment.ethnicity
                    )
                enrolments[event.enrolment_id] = new_enrolment
            elif isinstance(event, LearnerErased):
                # Right to erasure: still counted, but never by ethnicity again (a
                # rebuild after erasure cannot open it either, so both agree).
                for eid, state in list(enrolments.items()):
                    if state.learner == event.learner and state.ethnicity is not None:
                        enrolments[eid] = replace(state, ethnicity=None)
                erased = participants.get(event.learner)
                if erased is not None and erased.ethnic_group is not None:
                    participants[event.learner] = replace(erased, ethnic_group=None)
            elif isinstance(event, MatchRef):
                new_match = apply_to_match(matches.get(event.match_id), event)
                if isinstance(event, MatchConfirmed):
                    participants[event.participant] = apply_to_participant(
                        participants.get(event.participant), event
                    )
                matches[event.match_id] = new_match
        except Exception as exc:
            failed.append((index, exc))

    def matched(states: Mapping[str, ParticipantState], learner: str) -> tuple[bool, bool]:
        """(has a confirmed match, has a confirmed cross-background match)"""
        p = states.get(learner)
        return (p.matched, p.bridged) if p is not None else (False, False)

    deltas: dict[AggregateKey, Counts] = {}
    changed_enrolments: dict[str, EnrolmentState] = {}
    for eid, new in enrolments.items():
        old = loaded.enrolments.get(eid)
        old_matched = matched(loaded.participants, new.learner)
        new_matched = matched(participants, new.learner)
        if old == new and old_matched == new_matched:
            continue
        if old != new:
            changed_enrolments[eid] = new
        if old is not None:
            _add(deltas, enrolment_contributions(old, *old_matched), -1)
        _add(deltas, enrolment_contributions(new, *new_matched), +1)
    changed_participants: dict[str, ParticipantState] = {}
    for learner, new_p in participants.items():
        old_p = loaded.participants.get(learner)
        if old_p == new_p:
            continue
        changed_participants[learner] = new_p
        if old_p is not None:
            _add(deltas, participant_contributions(old_p), -1)
        _add(deltas, participant_contributions(new_p), +1)
    changed_matches: dict[str, MatchState] = {}
    for mid, new_m in matches.items():
        old_m = loaded.matches.get(mid)
        if old_m == new_m:
            continue
        changed_matches[mid] = new_m
        if old_m is not None:
            _add(deltas, match_contributions(old_m), -1)
        _add(deltas, match_contributions(new_m), +1)
    nonzero = {k: {n: v for n, v in c.items() if v} for k, c in deltas.items() if any(c.values())}
    return BatchOutcome(changed_enrolments, changed_participants, changed_matches, nonzero, failed)


def full_counts(name: AggregateName, partial: Mapping[str, int]) -> Counts:
    """Every counter of aggregate ``name`` in canonical order (missing ones as 0)."""
    return {f: int(partial.get(f, 0)) for f in AGGREGATES[name].fields}
