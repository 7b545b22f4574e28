"""The befriending scheme's rules, with no I/O: who may be paired (hard constraints),
how good a pair is (a weighted score that rewards difference), how the whole pool is
assigned at once (an optimal assignment, not first-come greedy), how each proposal is
explained, and how a match moves through its life.

Consent is structural here. The scorer only ever sees :class:`VolunteerView` and
:class:`ParticipantView`; their ``bridging`` profile is built from background fields
only when that person consented to be matched on background, and is ``None``
otherwise. A participant's :class:`Participant` record does not even keep background
fields without consent (see :func:`participant_from_opt_in`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.optimize import linear_sum_assignment

from shared.contracts.enrolment import ParticipantOptedIn
from shared.contracts.matching import (
    MatchConfirmed,
    MatchDeclined,
    MatchEnded,
    MatchProposed,
    VolunteerDbsExpired,
    VolunteerRegistered,
    VolunteerUpdated,
)
from shared.contracts.reference import (
    LOCAL_AUTHORITY_NAMES,
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Religion,
    Sex,
    combined_authority_of,
)

SLOT_PATTERN = r"^(mon|tue|wed|thu|fri|sat|sun)-(am|pm|eve)$"
"""Availability slots are weekday-period: ``mon-am``, ``sat-pm``, ``thu-eve``."""


class DomainError(Exception):
    """A rule of the scheme refused an operation; the message says which."""


class InvalidParticipant(DomainError):
    """An opt-in that can never be processed as it is (e.g. unknown local authority)."""


class InvalidTransition(DomainError):
    def __init__(self, match_id: str, status: MatchStatus, wanted: str) -> None:
        super().__init__(f"match {match_id} is {status.value}; it cannot be {wanted}")
        self.status = status


class VolunteerIneligible(DomainError):
    pass


# --------------------------------------------------------------------------- weights


class Weights(BaseModel):
    """Scorer weights for one combined authority (see ``weights.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ethnicity_group: float = Field(default=3.0, ge=0)
    religion: float = Field(default=2.0, ge=0)
    country_of_birth: float = Field(default=2.0, ge=0)
    age_band: float = Field(default=1.0, ge=0)
    base: float = Field(default=1.0, ge=0)
    shared_slot: float = Field(default=1.0, ge=0)
    max_shared_slots: int = Field(default=3, ge=1)
    shared_interest: float = Field(default=0.5, ge=0)
    max_shared_interests: int = Field(default=4, ge=0)
    shared_language: float = Field(default=0.5, ge=0)
    same_local_authority: float = Field(default=2.0, ge=0)
    neighbouring_local_authority: float = Field(default=0.0, ge=0)
    waiting_per_day: float = Field(default=0.25, ge=0)

    @model_validator(mode="after")
    def _same_borough_preferred(self) -> Weights:
        if self.same_local_authority < self.neighbouring_local_authority:
            raise ValueError(
                "same_local_authority must be >= neighbouring_local_authority "
                "(the same borough is preferred over a neighbouring one)"
            )
        return self


@dataclass(frozen=True)
class WeightsBook:
    """Default weights plus per-combined-authority overrides."""

    default: Weights = field(default_factory=Weights)
    by_authority: Mapping[CombinedAuthority, Weights] = field(default_factory=dict)

    def for_authority(self, authority: CombinedAuthority) -> Weights:
        return self.by_authority.get(authority, self.default)


class WeightsError(ValueError):
    pass


def weights_from_toml(text: str) -> WeightsBook:
    """Parse a weights file: ``[default]`` and ``[authorities.<code>]`` tables."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"weights file is not valid TOML: {exc}") from exc
    unknown = set(data) - {"default", "authorities"}
    if unknown:
        raise WeightsError(f"unknown top-level table(s) in weights file: {sorted(unknown)}")
    try:
        default = Weights.model_validate(data.get("default", {}))
        by_authority: dict[CombinedAuthority, Weights] = {}
        for code, overrides in data.get("authorities", {}).items():
            try:
                authority = CombinedAuthority(code)
            except ValueError:
                raise WeightsError(
                    f"[authorities.{code}] is not a combined authority code "
                    f"({', '.join(c.value for c in CombinedAuthority)})"
                ) from None
            by_authority[authority] = Weights.model_validate({**default.model_dump(), **overrides})
    except ValidationError as exc:
        raise WeightsError(f"invalid weights: {exc}") from exc
    return WeightsBook(default=default, by_authority=by_authority)


# --------------------------------------------------------------------------- people


class BridgingDimension(StrEnum):
    ETHNICITY_GROUP = "ethnicity_group"
    RELIGION = "religion"
    COUNTRY_OF_BIRTH = "country_of_birth"
    AGE_BAND = "age_band"

    @property
    def label(self) -> str:
        return _DIMENSION_LABELS[self]


_DIMENSION_LABELS = {
    BridgingDimension.ETHNICITY_GROUP: "ethnic group",
    BridgingDimension.RELIGION: "religion or belief",
    BridgingDimension.COUNTRY_OF_BIRTH: "country of birth",
    BridgingDimension.AGE_BAND: "age band",
}


@dataclass(frozen=True, slots=True)
class BridgingProfile:
    """What the scorer may compare across a pair. Exists only with consent."""

    ethnicity_group: str | None
    religion: Religion | None
    country_of_birth: str | None
    age_band: AgeBand | None


@dataclass(frozen=True, slots=True)
class BackgroundFields:
    """Background (special category) fields as stored: only ever with consent."""

    ethnicity: Ethnicity | None = None
    religion: Religion | None = None
    country_of_birth: str | None = None


def _bridging(background: BackgroundFields | None, age_band: AgeBand | None) -> BridgingProfile:
    bg = background or BackgroundFields()
    return BridgingProfile(
        ethnicity_group=bg.ethnicity.group if bg.ethnicity else None,
        religion=bg.religion,
        country_of_birth=bg.country_of_birth.upper() if bg.country_of_birth else None,
        age_band=age_band,
    )


def bridging_dimensions(
    a: BridgingProfile | None, b: BridgingProfile | None
) -> tuple[BridgingDimension, ...]:
    """The dimensions on which two consenting people differ (both values known)."""
    if a is None or b is None:
        return ()
    out: list[BridgingDimension] = []
    if a.ethnicity_group and b.ethnicity_group and a.ethnicity_group != b.ethnicity_group:
        out.append(BridgingDimension.ETHNICITY_GROUP)
    if (
        a.religion
        and b.religion
        and Religion.NOT_STATED not in (a.religion, b.religion)
        and a.religion != b.religion
    ):
        out.append(BridgingDimension.RELIGION)
    if a.country_of_birth and b.country_of_birth and a.country_of_birth != b.country_of_birth:
        out.append(BridgingDimension.COUNTRY_OF_BIRTH)
    if a.age_band and b.age_band and a.age_band != b.age_band:
        out.append(BridgingDimension.AGE_BAND)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class VolunteerView:
    """Everything the scorer and constraints may read about a volunteer."""

    volunteer_id: str
    combined_authority: CombinedAuthority
    local_authority: str
    availability: frozenset[str]
    interests: frozenset[str]
    languages: frozenset[str]
    gender: Sex | None
    gender_preference: Sex | None
    dbs_expires_on: date
    free_capacity: int
    bridging: BridgingProfile | None


@dataclass(frozen=True, slots=True)
class ParticipantView:
    """Everything the scorer and constraints may read about a participant.

    ``bridging`` is ``None`` unless the participant consented to matching on background:
    there is no other path from background fields to the scorer."""

    participant: str
    combined_authority: CombinedAuthority
    local_authority: str
    availability: frozenset[str]
    interests: frozenset[str]
    languages: frozenset[str]
    sex: Sex | None
    gender_preference: Sex | None
    declined_volunteers: frozenset[str]
    previous_volunteers: frozenset[str]
    waiting_since: datetime
    bridging: BridgingProfile | None


def _norm(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip().lower() for v in values if v and v.strip()}))


@dataclass(frozen=True)
class Volunteer:
    volunteer_id: str
    combined_authority: CombinedAuthority
    local_authority: str
    capacity: int
    dbs_expires_on: date
    registered_at: datetime
    updated_at: datetime
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    gender: Sex | None = None
    gender_preference: Sex | None = None
    age_band: AgeBand | None = None
    consent_matching: bool = False
    background: BackgroundFields | None = None
    active: int = 0
    """Proposed plus confirmed matches (what counts against capacity)."""
    dbs_expiry_notified_for: date | None = None
    version: int = 0
    external_ref: str | None = None
    """The coordinators' own reference, unique within the combined authority where the
    volunteer was registered (never part of an event)."""

    def __post_init__(self) -> None:
        if not self.consent_matching and self.background is not None:
            object.__setattr__(self, "background", None)

    def dbs_valid(self, today: date) -> bool:
        return self.dbs_expires_on >= today

    @property
    def free_capacity(self) -> int:
        return max(0, self.capacity - self.active)

    def view(self) -> VolunteerView:
        return VolunteerView(
            volunteer_id=self.volunteer_id,
            combined_authority=self.combined_authority,
            local_authority=self.local_authority,
            availability=frozenset(self.availability),
            interests=frozenset(self.interests),
            languages=frozenset(self.languages),
            gender=self.gender,
            gender_preference=self.gender_preference,
            dbs_expires_on=self.dbs_expires_on,
            free_capacity=self.free_capacity,
            bridging=_bridging(self.background, self.age_band) if self.consent_matching else None,
        )


def needs_dbs_expiry_notice(volunteer: Volunteer, today: date) -> bool:
    """True once per lapsed DBS date: the expiry event has not been emitted for it yet."""
    return (
        not volunteer.dbs_valid(today)
        and volunteer.dbs_expiry_notified_for != volunteer.dbs_expires_on
    )


@dataclass(frozen=True)
class VolunteerDetails:
    """What a coordinator states when registering or updating a volunteer."""

    local_authority: str
    capacity: int
    dbs_expires_on: date
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    gender: Sex | None = None
    gender_preference: Sex | None = None
    age_band: AgeBand | None = None
    consent_matching: bool = False
    background: BackgroundFields | None = None


def register_or_update_volunteer(
    existing: Volunteer | None, volunteer_id: str, details: VolunteerDetails, now: datetime
) -> Volunteer:
    authority = combined_authority_of(details.local_authority)
    if authority is None:
        raise DomainError(f"unknown local authority {details.local_authority!r}")
    if existing is not None and existing.active > 0 and existing.combined_authority != authority:
        raise DomainError(
            "a volunteer with proposed or confirmed matches cannot move to another "
            "combined authority; end or decline those matches first"
        )
    return Volunteer(
        volunteer_id=volunteer_id,
        combined_authority=authority,
        local_authority=details.local_authority,
        capacity=details.capacity,
        dbs_expires_on=details.dbs_expires_on,
        registered_at=existing.registered_at if existing else now,
        updated_at=now,
        languages=_norm(details.languages),
        availability=_norm(details.availability),
        interests=_norm(details.interests),
        gender=details.gender,
        gender_preference=details.gender_preference,
        age_band=details.age_band,
        consent_matching=details.consent_matching,
        background=details.background if details.consent_matching else None,
        active=existing.active if existing else 0,
        dbs_expiry_notified_for=existing.dbs_expiry_notified_for if existing else None,
        version=existing.version + 1 if existing else 1,
        external_ref=existing.external_ref if existing else None,
    )


class ParticipantStatus(StrEnum):
    WAITING = "waiting"
    PROPOSED = "proposed"
    MATCHED = "matched"
    ENDED = "ended"


@dataclass(frozen=True)
class Participant:
    participant: str
    enrolment_id: str | None
    combined_authority: CombinedAuthority
    local_authority: str
    age_band: AgeBand | None
    waiting_since: datetime
    """Priority anchor: kept across declines so waiting time keeps counting."""
    pool_entered_at: datetime
    """When the participant last (re)entered the pool: drives the batch threshold."""
    opted_in_at: datetime
    status: ParticipantStatus = ParticipantStatus.WAITING
    sex: Sex | None = None
    gender_preference: Sex | None = None
    languages: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    consent_matching: bool = False
    background: BackgroundFields | None = None
    declined_volunteers: tuple[str, ...] = ()
    previous_volunteers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.consent_matching and self.background is not None:
            object.__setattr__(self, "background", None)

    def view(self) -> ParticipantView:
        return ParticipantView(
            participant=self.participant,
            combined_authority=self.combined_authority,
            local_authority=self.local_authority,
            availability=frozenset(self.availability),
            interests=frozenset(self.interests),
            languages=frozenset(self.languages),
            sex=self.sex,
            gender_preference=self.gender_preference,
            declined_volunteers=frozenset(self.declined_volunteers),
            previous_volunteers=frozenset(self.previous_volunteers),
            waiting_since=self.waiting_since,
            bridging=_bridging(self.background, self.age_band) if self.consent_matching else None,
        )


def participant_from_opt_in(event: ParticipantOptedIn, now: datetime) -> Participant:
    """The pool entry for an opt-in. Background fields are not even read without consent."""
    if combined_authority_of(event.local_authority) != event.combined_authority:
        raise InvalidParticipant(
            f"local authority {event.local_authority!r} is not in combined authority "
            f"{event.combined_authority.value}"
        )
    consent = event.consent.matching
    background: BackgroundFields | None = None
    if consent and event.background is not None:
        background = BackgroundFields(
            ethnicity=event.background.ethnicity,
            religion=event.background.religion,
            country_of_birth=event.background.country_of_birth,
        )
    return Participant(
        participant=event.learner,
        enrolment_id=event.enrolment_id,
        combined_authority=event.combined_authority,
        local_authority=event.local_authority,
        age_band=event.age_band,
        # Waiting counts from the opt-in itself (not from when we consumed it), but
        # never from the future.
        waiting_since=min(event.opted_in_at, now),
        pool_entered_at=now,
        opted_in_at=event.opted_in_at,
        sex=event.sex,
        gender_preference=event.gender_preference,
        languages=_norm(event.languages),
        availability=_norm(event.availability),
        interests=_norm(event.interests),
        consent_matching=consent,
        background=background,
    )


def merge_opt_in(existing: Participant | None, incoming: Participant) -> Participant:
    """A new opt-in from someone already known updates their preferences; their place in
    the queue, status and match history are kept (an ended participant re-enters)."""
    if existing is None:
        return incoming
    rejoining = existing.status is ParticipantStatus.ENDED
    return replace(
        incoming,
        status=ParticipantStatus.WAITING if rejoining else existing.status,
        waiting_since=incoming.waiting_since if rejoining else existing.waiting_since,
        pool_entered_at=incoming.pool_entered_at if rejoining else existing.pool_entered_at,
        declined_volunteers=existing.declined_volunteers,
        previous_volunteers=existing.previous_volunteers,
    )


# --------------------------------------------------------------------------- constraints


class Violation(StrEnum):
    DIFFERENT_COMBINED_AUTHORITY = "different_combined_authority"
    DBS_EXPIRED = "dbs_expired"
    NO_CAPACITY = "no_capacity"
    NO_SHARED_AVAILABILITY = "no_shared_availability"
    PARTICIPANT_GENDER_PREFERENCE = "participant_gender_preference"
    VOLUNTEER_GENDER_PREFERENCE = "volunteer_gender_preference"
    DECLINED_BEFORE = "declined_before"
    MATCHED_BEFORE = "matched_before"


def violations(v: VolunteerView, p: ParticipantView, today: date) -> tuple[Violation, ...]:
    """Every hard constraint the pair breaks (empty = feasible)."""
    out: list[Violation] = []
    if v.combined_authority != p.combined_authority:
        out.append(Violation.DIFFERENT_COMBINED_AUTHORITY)
    if v.dbs_expires_on < today:
        out.append(Violation.DBS_EXPIRED)
    if v.free_capacity <= 0:
        out.append(Violation.NO_CAPACITY)
    if v.availability.isdisjoint(p.availability):
        out.append(Violation.NO_SHARED_AVAILABILITY)
    if p.gender_preference is not None and v.gender != p.gender_preference:
        out.append(Violation.PARTICIPANT_GENDER_PREFERENCE)
    if v.gender_preference is not None and p.sex != v.gender_preference:
        out.append(Violation.VOLUNTEER_GENDER_PREFERENCE)
    if v.volunteer_id in p.declined_volunteers:
        out.append(Violation.DECLINED_BEFORE)
    if v.volunteer_id in p.previous_volunteers:
        out.append(Violation.MATCHED_BEFORE)
    return tuple(out)


def feasible(v: VolunteerView, p: ParticipantView, today: date) -> bool:
    """Same as ``not violations(...)``, short-circuiting (the optimiser's hot path)."""
    return (
        v.combined_authority == p.combined_authority
        and v.dbs_expires_on >= today
        and v.free_capacity > 0
        and not v.availability.isdisjoint(p.availability)
        and (p.gender_preference is None or v.gender == p.gender_preference)
        and (v.gender_preference is None or p.sex == v.gender_preference)
        and v.volunteer_id not in p.declined_volunteers
        and v.volunteer_id not in p.previous_volunteers
    )


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ScoreBreakdown:
    total: float
    components: Mapping[str, float]
    bridging_dimensions: tuple[BridgingDimension, ...]
    shared_slots: tuple[str, ...]
    shared_interests: tuple[str, ...]
    shared_languages: tuple[str, ...]
    same_local_authority: bool


def score_value(v: VolunteerView, p: ParticipantView, w: Weights) -> float:
    """The pair's score under ``w`` (hard constraints are checked separately). This is
    the optimiser's hot path; :func:`score` explains the same number."""
    total = w.base
    a, b = v.bridging, p.bridging
    if a is not None and b is not None:
        if a.ethnicity_group and b.ethnicity_group and a.ethnicity_group != b.ethnicity_group:
            total += w.ethnicity_group
        if (
            a.religion
            and b.religion
            and a.religion is not Religion.NOT_STATED
            and b.religion is not Religion.NOT_STATED
            and a.religion != b.religion
        ):
            total += w.religion
        if a.country_of_birth and b.country_of_birth and a.country_of_birth != b.country_of_birth:
            total += w.country_of_birth
        if a.age_band and b.age_band and a.age_band != b.age_band:
            total += w.age_band
    total += w.shared_slot * min(len(v.availability & p.availability), w.max_shared_slots)
    total += w.shared_interest * min(len(v.interests & p.interests), w.max_shared_interests)
    if not v.languages.isdisjoint(p.languages):
        total += w.shared_language
    if v.local_authority == p.local_authority:
        total += w.same_local_authority
    else:
        total += w.neighbouring_local_authority
    return round(total, 6)


def score(v: VolunteerView, p: ParticipantView, w: Weights) -> ScoreBreakdown:
    """The pair's score with its explanation: components, bridging dimensions, what is
    shared."""
    slots = tuple(sorted(v.availability & p.availability))
    interests = tuple(sorted(v.interests & p.interests))
    languages = tuple(sorted(v.languages & p.languages))
    bridging = bridging_dimensions(v.bridging, p.bridging)
    same = v.local_authority == p.local_authority
    components: dict[str, float] = {"base": w.base}
    for dim in bridging:
        components[dim.value] = getattr(w, dim.value)
    components["shared_slots"] = w.shared_slot * min(len(slots), w.max_shared_slots)
    components["shared_interests"] = w.shared_interest * min(len(interests), w.max_shared_interests)
    components["shared_language"] = w.shared_language if languages else 0.0
    components["locality"] = w.same_local_authority if same else w.neighbouring_local_authority
    return ScoreBreakdown(
        total=score_value(v, p, w),
        components=components,
        bridging_dimensions=bridging,
        shared_slots=slots,
        shared_interests=interests,
        shared_languages=languages,
        same_local_authority=same,
    )


def waiting_bonus(p: ParticipantView, now: datetime, w: Weights) -> float:
    """Priority from waiting: grows without bound, so nobody waits forever while a
    feasible volunteer keeps being given to others."""
    days = max(0.0, (now - p.waiting_since).total_seconds() / 86400.0)
    return w.waiting_per_day * days


def _days(delta: timedelta) -> int:
    return max(0, delta.days)


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def explain(
    breakdown: ScoreBreakdown,
    volunteer_local_authority: str,
    participant_local_authority: str,
    waited: timedelta,
) -> str:
    """A coordinator-readable account of a proposal. It names the dimensions on which
    the pair differ, never anyone's actual ethnicity, religion or country."""
    parts: list[str] = []
    if breakdown.bridging_dimensions:
        labels = [d.label for d in breakdown.bridging_dimensions]
        parts.append(f"Bridges a difference in {_join(labels)}.")
    else:
        parts.append("No background-based bridging: scored on practicalities only.")
    parts.append(f"Both available {_join(list(breakdown.shared_slots))}.")
    if breakdown.shared_interests:
        parts.append(f"Shared interests: {_join(list(breakdown.shared_interests))}.")
    if breakdown.shared_languages:
        parts.append(f"Language in common: {_join(list(breakdown.shared_languages))}.")
    v_name = LOCAL_AUTHORITY_NAMES.get(volunteer_local_authority, volunteer_local_authority)
    p_name = LOCAL_AUTHORITY_NAMES.get(participant_local_authority, participant_local_authority)
    if breakdown.same_local_authority:
        parts.append(f"Same borough ({p_name}).")
    else:
        parts.append(f"Neighbouring boroughs ({v_name} and {p_name}).")
    days = _days(waited)
    parts.append(f"Participant waiting {days} day{'s' if days != 1 else ''}.")
    parts.append(f"Score {breakdown.total:g}.")
    return " ".join(parts)


# --------------------------------------------------------------------------- assignment


@dataclass(frozen=True)
class Proposal:
    volunteer_id: str
    participant: str
    breakdown: ScoreBreakdown
    priority: float
    """The waiting bonus that was added to the score for the optimiser's objective."""

    @property
    def score(self) -> float:
        return self.breakdown.total

    @property
    def objective(self) -> float:
        return self.breakdown.total + self.priority


def _ordered(
    volunteers: Iterable[VolunteerView], participants: Iterable[ParticipantView]
) -> tuple[list[VolunteerView], list[ParticipantView]]:
    """Stable input order: results never depend on the order rows came from the DB."""
    vols = sorted(volunteers, key=lambda v: v.volunteer_id)
    parts = sorted(participants, key=lambda p: (p.waiting_since, p.participant))
    if len({v.volunteer_id for v in vols}) != len(vols):
        raise ValueError("duplicate volunteer ids in the pool")
    if len({p.participant for p in parts}) != len(parts):
        raise ValueError("duplicate participants in the pool")
    return vols, parts


def _candidates(vols: Sequence[VolunteerView]) -> Callable[[ParticipantView], list[int]]:
    """Volunteer indexes sharing at least one slot with a participant (a necessary
    condition of feasibility), in index order: prunes most pairs before scoring."""
    by_slot: dict[str, list[int]] = {}
    for vi, v in enumerate(vols):
        for slot in v.availability:
            by_slot.setdefault(slot, []).append(vi)

    def candidates(p: ParticipantView) -> list[int]:
        found: set[int] = set()
        for slot in p.availability:
            found.update(by_slot.get(slot, ()))
        return sorted(found)

    return candidates


def optimal_assignment(
    volunteers: Iterable[VolunteerView],
    participants: Iterable[ParticipantView],
    weights: Weights,
    *,
    today: date,
    now: datetime,
) -> list[Proposal]:
    """Whole-pool assignment maximising total (score + waiting priority).

    Volunteers are expanded into one column per free capacity slot, and every
    participant gets a private "stay waiting" column worth 0, so the solver maximises
    total weight (not merely the number of pairs) and infeasible pairs (-inf) are never
    chosen. Deterministic: inputs are put in a stable order first and the solver is
    deterministic for a given matrix.
    """
    vols, parts = _ordered(volunteers, participants)
    candidates = _candidates(vols)
    rows: list[tuple[ParticipantView, float, list[tuple[int, float]]]] = []
    demand: dict[int, int] = {}
    for p in parts:
        options = [
            (vi, score_value(vols[vi], p, weights))
            for vi in candidates(p)
            if feasible(vols[vi], p, today)
        ]
        if options:
            rows.append((p, waiting_bonus(p, now, weights), options))
            for vi, _ in options:
                demand[vi] = demand.get(vi, 0) + 1
    if not rows:
        return []
    # A volunteer needs no more columns than participants who could take them.
    columns: dict[int, range] = {}
    width = 0
    for vi in sorted(demand):
        n = min(vols[vi].free_capacity, demand[vi])
        columns[vi] = range(width, width + n)
        width += n
    matrix = np.full((len(rows), width + len(rows)), -np.inf)
    for r, (_, bonus, options) in enumerate(rows):
        for vi, value in options:
            cols = columns[vi]
            matrix[r, cols.start : cols.stop] = value + bonus
        matrix[r, width + r] = 0.0
    row_idx, col_idx = linear_sum_assignment(matrix, maximize=True)
    owner = {c: vi for vi, cols in columns.items() for c in cols}
    proposals: list[Proposal] = []
    for r, c in zip(row_idx.tolist(), col_idx.tolist(), strict=True):
        if c >= width:
            continue
        p, bonus, _ = rows[r]
        v = vols[owner[c]]
        proposals.append(Proposal(v.volunteer_id, p.participant, score(v, p, weights), bonus))
    return proposals


def greedy_assignment(
    volunteers: Iterable[VolunteerView],
    participants: Iterable[ParticipantView],
    weights: Weights,
    *,
    today: date,
    now: datetime,
) -> list[Proposal]:
    """The baseline: first come, first served; each participant in waiting order takes
    the best-scoring feasible volunteer still free (ties: lowest volunteer id)."""
    vols, parts = _ordered(volunteers, participants)
    candidates = _candidates(vols)
    free = [v.free_capacity for v in vols]
    proposals: list[Proposal] = []
    for p in parts:
        best: tuple[float, int] | None = None
        for vi in candidates(p):
            if free[vi] <= 0 or not feasible(vols[vi], p, today):
                continue
            value = score_value(vols[vi], p, weights)
            if best is None or value > best[0]:
                best = (value, vi)
        if best is not None:
            vi = best[1]
            free[vi] -= 1
            proposals.append(
                Proposal(
                    vols[vi].volunteer_id,
                    p.participant,
                    score(vols[vi], p, weights),
                    waiting_bonus(p, now, weights),
                )
            )
    return proposals


def total_score(proposals: Iterable[Proposal]) -> float:
    return math.fsum(p.score for p in proposals)


def total_objective(proposals: Iterable[Proposal]) -> float:
    return math.fsum(p.objective for p in proposals)


@dataclass(frozen=True)
class BatchPolicy:
    """When a combined authority's pool is worth an optimiser run."""

    threshold: int
    window: timedelta

    def should_run(
        self, *, now: datetime, last_run_at: datetime | None, waiting: int, arrived: int
    ) -> bool:
        """``arrived``: people who entered the pool since the last run."""
        if waiting <= 0:
            return False
        if arrived >= self.threshold:
            return True
        return last_run_at is None or now - last_run_at >= self.window


# --------------------------------------------------------------------------- matches


class MatchStatus(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    ENDED = "ended"


ACTIVE_MATCH_STATUSES = (MatchStatus.PROPOSED, MatchStatus.CONFIRMED)
FLAG_DBS_EXPIRED = "volunteer_dbs_expired"


@dataclass(frozen=True)
class Match:
    match_id: str
    volunteer_id: str
    participant: str
    enrolment_id: str | None
    combined_authority: CombinedAuthority
    local_authority: str
    status: MatchStatus
    score: float
    score_components: Mapping[str, float]
    bridging_dimensions: tuple[str, ...]
    shared_slots: tuple[str, ...]
    shared_interests: tuple[str, ...]
    explanation: str
    waited_since: datetime
    proposed_at: datetime
    run_id: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    decline_reason: str | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    meetings_count: int | None = None
    flags: tuple[str, ...] = ()

    @property
    def cross_background(self) -> bool:
        return bool(self.bridging_dimensions)


def propose(
    proposal: Proposal,
    volunteer: VolunteerView,
    participant: Participant,
    *,
    match_id: str,
    run_id: str,
    now: datetime,
) -> Match:
    b = proposal.breakdown
    return Match(
        match_id=match_id,
        volunteer_id=volunteer.volunteer_id,
        participant=participant.participant,
        enrolment_id=participant.enrolment_id,
        combined_authority=participant.combined_authority,
        local_authority=participant.local_authority,
        status=MatchStatus.PROPOSED,
        score=b.total,
        score_components=dict(b.components),
        bridging_dimensions=tuple(d.value for d in b.bridging_dimensions),
        shared_slots=b.shared_slots,
        shared_interests=b.shared_interests,
        explanation=explain(
            b,
            volunteer.local_authority,
            participant.local_authority,
            now - participant.waiting_since,
        ),
        waited_since=participant.waiting_since,
        proposed_at=now,
        run_id=run_id,
    )


@dataclass(frozen=True)
class MatchTransition:
    """A coordinator decision or an ending, with its effect on participant and volunteer
    (applied atomically with the event it announces)."""

    match: Match
    """The match after the transition."""
    expected_status: MatchStatus
    participant_from: ParticipantStatus
    participant_to: ParticipantStatus
    at: datetime
    volunteer_active_delta: int = 0
    exclude_as: str | None = None
    """``declined`` or ``previous``: the pair is never proposed again."""
    restart_wait: bool = False
    """The participant's waiting time starts again (a new wait after an ended match)."""
    reenter_pool: bool = False


def accept(
    match: Match, volunteer: Volunteer | None, *, today: date, now: datetime, by: str
) -> MatchTransition:
    if match.status is not MatchStatus.PROPOSED:
        raise InvalidTransition(match.match_id, match.status, "accepted")
    if volunteer is None:
        raise VolunteerIneligible(f"volunteer {match.volunteer_id} is no longer registered")
    if not volunteer.dbs_valid(today):
        raise VolunteerIneligible(
            f"volunteer {volunteer.volunteer_id}'s DBS check expired on "
            f"{volunteer.dbs_expires_on.isoformat()}; renew it before confirming"
        )
    return MatchTransition(
        match=replace(match, status=MatchStatus.CONFIRMED, decided_at=now, decided_by=by),
        expected_status=MatchStatus.PROPOSED,
        participant_from=ParticipantStatus.PROPOSED,
        participant_to=ParticipantStatus.MATCHED,
        at=now,
    )


def decline(match: Match, reason: str, *, now: datetime, by: str) -> MatchTransition:
    """The participant goes back to the pool (keeping their place by waiting time) and
    this pair is never proposed again."""
    if match.status is not MatchStatus.PROPOSED:
        raise InvalidTransition(match.match_id, match.status, "declined")
    return MatchTransition(
        match=replace(
            match,
            status=MatchStatus.DECLINED,
            decided_at=now,
            decided_by=by,
            decline_reason=reason,
        ),
        expected_status=MatchStatus.PROPOSED,
        participant_from=ParticipantStatus.PROPOSED,
        participant_to=ParticipantStatus.WAITING,
        at=now,
        volunteer_active_delta=-1,
        exclude_as="declined",
        reenter_pool=True,
    )


def end(
    match: Match, reason: str, meetings_count: int, *, now: datetime, rematch: bool = False
) -> MatchTransition:
    """A confirmed match ends. With ``rematch`` the participant waits for a new
    volunteer (never this one again); otherwise they leave the pool until they opt in
    again."""
    if match.status is not MatchStatus.CONFIRMED:
        raise InvalidTransition(match.match_id, match.status, "ended")
    if meetings_count < 0:
        raise DomainError("meetings_count cannot be negative")
    return MatchTransition(
        match=replace(
            match,
            status=MatchStatus.ENDED,
            ended_at=now,
            end_reason=reason,
            meetings_count=meetings_count,
        ),
        expected_status=MatchStatus.CONFIRMED,
        participant_from=ParticipantStatus.MATCHED,
        participant_to=ParticipantStatus.WAITING if rematch else ParticipantStatus.ENDED,
        at=now,
        volunteer_active_delta=-1,
        exclude_as="previous",
        restart_wait=rematch,
        reenter_pool=rematch,
    )


# --------------------------------------------------------------------------- events


def _match_ref(match: Match) -> dict[str, Any]:
    return {
        "match_id": match.match_id,
        "volunteer_id": match.volunteer_id,
        "participant": match.participant,
        "enrolment_id": match.enrolment_id,
        "combined_authority": match.combined_authority,
        "local_authority": match.local_authority,
    }


def match_proposed(match: Match) -> MatchProposed:
    return MatchProposed(
        **_match_ref(match),
        score=match.score,
        score_components=dict(match.score_components),
        bridging_dimensions=match.bridging_dimensions,
        shared_slots=match.shared_slots,
        shared_interests=match.shared_interests,
        explanation=match.explanation,
        waited_since=match.waited_since,
        proposed_at=match.proposed_at,
        run_id=match.run_id,
    )


def match_confirmed(match: Match) -> MatchConfirmed:
    assert match.decided_at is not None
    return MatchConfirmed(
        **_match_ref(match),
        cross_background=match.cross_background,
        waited_since=match.waited_since,
        confirmed_at=match.decided_at,
    )


def match_declined(match: Match) -> MatchDeclined:
    assert match.decided_at is not None and match.decline_reason is not None
    return MatchDeclined(
        **_match_ref(match), reason=match.decline_reason, declined_at=match.decided_at
    )


def match_ended(match: Match) -> MatchEnded:
    assert match.ended_at is not None and match.end_reason is not None
    return MatchEnded(
        **_match_ref(match),
        reason=match.end_reason,
        meetings_count=match.meetings_count or 0,
        ended_at=match.ended_at,
    )


def volunteer_event(v: Volunteer, *, created: bool) -> VolunteerRegistered | VolunteerUpdated:
    """The public record of a volunteer: no background fields, ever."""
    common: dict[str, Any] = {
        "volunteer_id": v.volunteer_id,
        "combined_authority": v.combined_authority,
        "local_authority": v.local_authority,
        "capacity": v.capacity,
        "dbs_expires_on": v.dbs_expires_on,
        "languages": v.languages,
        "availability": v.availability,
        "interests": v.interests,
    }
    if created:
        return VolunteerRegistered(**common, registered_at=v.registered_at)
    return VolunteerUpdated(**common, updated_at=v.updated_at)


def volunteer_dbs_expired(v: Volunteer, match_ids: Sequence[str]) -> VolunteerDbsExpired:
    return VolunteerDbsExpired(
        volunteer_id=v.volunteer_id,
        combined_authority=v.combined_authority,
        local_authority=v.local_authority,
        dbs_expired_on=v.dbs_expires_on,
        paused_match_ids=tuple(sorted(match_ids)),
    )
