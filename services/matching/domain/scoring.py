"""How good a feasible pair is: a weighted score that rewards difference in
background (with consent), plus what the pair share, and a readable explanation that
names dimensions, never anyone's values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.matching.domain.profiles import (
    BridgingDimension,
    ParticipantView,
    VolunteerView,
    bridging_dimensions,
)
from services.matching.domain.weights import Weights
from shared.contracts.reference import (
    LOCAL_AUTHORITY_NAMES,
    Religion,
)


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
