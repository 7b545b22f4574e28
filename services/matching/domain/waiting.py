"""Why is someone still waiting? Pure, no I/O.

For a waiting participant, the volunteers of the whole pool are put through the hard
constraints of :func:`services.matching.domain.violations` one kind at a time, in a
fixed order, and the first kind that leaves nobody is the reason they wait:

1. **no volunteers**: nobody registered in their combined authority;
2. **no shared slot**: no volunteer there shares an availability slot with them;
3. **gender preference**: of those, none fits the participant's stated gender
   preference and the volunteer's own;
4. **only declined pairs left**: every remaining volunteer was declined for them before,
   or was their volunteer in a match that ended;
5. **no valid DBS**: every remaining volunteer's DBS check has lapsed;
6. **no capacity**: every remaining volunteer is at capacity.

If someone is left after all six, nothing structural keeps the participant waiting: a
feasible pair exists and the next optimiser run may propose it (``awaiting_next_run``).
The order goes from what the participant asked for (their slots, their preference),
through history, to what the Office can change soonest (DBS renewals, capacity), so the
reason names the most fundamental obstacle; the funnel of counts shows the rest.

The constraints themselves are not restated here: every step reads the violations the
optimiser uses, and every kind of :class:`Violation` belongs to exactly one step (a unit
test checks that a new constraint cannot be forgotten). Background (special category)
fields play no part in any hard constraint, so no reason depends on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from services.matching.domain import (
    ParticipantView,
    Violation,
    VolunteerView,
    violations,
)
from shared.contracts.reference import COMBINED_AUTHORITY_NAMES


class WaitingReason(StrEnum):
    NO_VOLUNTEERS = "no_volunteers"
    NO_SHARED_SLOT = "no_shared_slot"
    GENDER_PREFERENCE = "gender_preference"
    ONLY_DECLINED_PAIRS = "only_declined_pairs"
    NO_VALID_DBS = "no_valid_dbs"
    NO_CAPACITY = "no_capacity"
    AWAITING_NEXT_RUN = "awaiting_next_run"

    @property
    def label(self) -> str:
        return REASON_LABELS[self]


REASON_LABELS: Mapping[WaitingReason, str] = {
    WaitingReason.NO_VOLUNTEERS: "No volunteer registered in their combined authority",
    WaitingReason.NO_SHARED_SLOT: "No volunteer with a shared availability slot",
    WaitingReason.GENDER_PREFERENCE: "No volunteer fitting the gender preferences",
    WaitingReason.ONLY_DECLINED_PAIRS: "Only declined or former pairs left",
    WaitingReason.NO_VALID_DBS: "No suitable volunteer with a valid DBS check",
    WaitingReason.NO_CAPACITY: "No capacity: every suitable volunteer is full",
    WaitingReason.AWAITING_NEXT_RUN: "A feasible volunteer exists: awaiting the next run",
}

STEPS: tuple[tuple[WaitingReason, frozenset[Violation]], ...] = (
    (WaitingReason.NO_VOLUNTEERS, frozenset({Violation.DIFFERENT_COMBINED_AUTHORITY})),
    (WaitingReason.NO_SHARED_SLOT, frozenset({Violation.NO_SHARED_AVAILABILITY})),
    (
        WaitingReason.GENDER_PREFERENCE,
        frozenset({Violation.PARTICIPANT_GENDER_PREFERENCE, Violation.VOLUNTEER_GENDER_PREFERENCE}),
    ),
    (
        WaitingReason.ONLY_DECLINED_PAIRS,
        frozenset({Violation.DECLINED_BEFORE, Violation.MATCHED_BEFORE}),
    ),
    (WaitingReason.NO_VALID_DBS, frozenset({Violation.DBS_EXPIRED})),
    (WaitingReason.NO_CAPACITY, frozenset({Violation.NO_CAPACITY})),
)
"""The funnel: each step removes the volunteers breaking any of its constraints."""


@dataclass(frozen=True)
class FunnelStep:
    reason: WaitingReason
    remaining: int
    """Volunteers still possible after this step (and every step before it)."""


@dataclass(frozen=True)
class WaitingDiagnosis:
    participant: str
    local_authority: str
    waiting_since: datetime
    reason: WaitingReason
    funnel: tuple[FunnelStep, ...]
    explanation: str

    def days_waiting(self, today: date) -> int:
        return max(0, (today - self.waiting_since.date()).days)


_FUNNEL_WORDS: Mapping[WaitingReason, str] = {
    WaitingReason.NO_VOLUNTEERS: "registered in {ca}",
    WaitingReason.NO_SHARED_SLOT: "share an availability slot with them",
    WaitingReason.GENDER_PREFERENCE: "also fit the gender preferences",
    WaitingReason.ONLY_DECLINED_PAIRS: "were never declined for them nor matched with them",
    WaitingReason.NO_VALID_DBS: "also have a valid DBS check",
    WaitingReason.NO_CAPACITY: "also have room for another participant",
}


def _explain(participant: ParticipantView, funnel: Sequence[FunnelStep]) -> str:
    ca = COMBINED_AUTHORITY_NAMES.get(participant.combined_authority, "their combined authority")
    parts = []
    for step in funnel:
        words = _FUNNEL_WORDS[step.reason].format(ca=ca)
        people = "volunteer" if step.remaining == 1 else "volunteers"
        parts.append(f"{step.remaining} {people} {words}")
        if step.remaining == 0:
            break
    text = "; ".join(parts)
    last = funnel[-1] if funnel else None
    if last is not None and last.remaining > 0:
        return f"{text}: the next optimiser run can propose a match."
    return f"{text}."


def diagnose(
    participant: ParticipantView, volunteers: Iterable[VolunteerView], today: date
) -> WaitingDiagnosis:
    """Which hard constraint keeps ``participant`` unmatched, given every volunteer."""
    broken = [frozenset(violations(v, participant, today)) for v in volunteers]
    excluded: frozenset[Violation] = frozenset()
    funnel: list[FunnelStep] = []
    reason = WaitingReason.AWAITING_NEXT_RUN
    for step, kinds in STEPS:
        excluded |= kinds
        remaining = sum(1 for b in broken if not (b & excluded))
        funnel.append(FunnelStep(step, remaining))
        if remaining == 0:
            reason = step
            break
    return WaitingDiagnosis(
        participant=participant.participant,
        local_authority=participant.local_authority,
        waiting_since=participant.waiting_since,
        reason=reason,
        funnel=tuple(funnel),
        explanation=_explain(participant, funnel),
    )


def diagnose_pool(
    participants: Iterable[ParticipantView], volunteers: Iterable[VolunteerView], today: date
) -> list[WaitingDiagnosis]:
    """A diagnosis per waiting participant, longest-waiting first."""
    pool = list(volunteers)
    ordered = sorted(participants, key=lambda p: (p.waiting_since, p.participant))
    return [diagnose(p, pool, today) for p in ordered]


def reason_counts(diagnoses: Iterable[WaitingDiagnosis]) -> dict[WaitingReason, int]:
    """How many wait for each reason (every reason listed, zeros included)."""
    counts = Counter(d.reason for d in diagnoses)
    return {reason: counts.get(reason, 0) for reason in WaitingReason}
