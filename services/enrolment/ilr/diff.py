"""An enrolment as accepted before vs. as the latest ILR file states it: what to apply.
Pure: no I/O, no clock (``today`` and ``now`` are given).

The lifecycle rules are the enrolment domain's (:func:`accept`,
:func:`apply_progress`): a file can only do what the JSON API could. The difference is
found on the enrolment's history: the lifecycle steps already applied (break, resume,
completion, withdrawal) must be the beginning of the steps the file states, and the
rest is applied in order; an outcome that was "not yet known" (8) and is now known
becomes ``OutcomeRecorded``. Applying the same file again therefore changes nothing.

A file that contradicts what was accepted (a changed date, a completion turned back
into continuing) is a correction: it is reported and nothing of that aim is applied
(corrections are not supported, as on the JSON API). One ILR practice is not a
correction: an aim on a break that the provider later marks withdrawn (CompStatus 6 →
3) withdraws the enrolment from its break.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel

from services.enrolment.domain import (
    Enrolment,
    IllegalTransition,
    InvalidProgress,
    OutcomeProgress,
    Provider,
    Pseudonymiser,
    Status,
    accept,
    apply_progress,
)
from services.enrolment.ilr.mapping import AimTarget, Issue, step_kind
from shared.cloudevents import Event
from shared.contracts.reference import Outcome

LIFECYCLE_KINDS = frozenset({"break", "resume", "completion", "withdrawal"})
# Fields compared (by name only) to report changed details of an accepted enrolment.
_COMPARED_FIELDS = (
    "given_names",
    "family_name",
    "postcode",
    "date_of_birth",
    "sex",
    "ethnicity",
    "combined_authority",
    "local_authority",
    "programme",
    "level",
    "planned_end_date",
    "planned_hours",
    "fund_model",
)


class AimStatus(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AimResult:
    status: AimStatus
    enrolment: Enrolment | None = None
    expected_version: int | None = None
    events: tuple[Event, ...] = ()
    issues: tuple[Issue, ...] = ()


def _issue(target: AimTarget, rule: str, message: str, severity: str = "error") -> Issue:
    return Issue(
        rule=rule,
        severity="error" if severity == "error" else "warning",
        message=message,
        field="CompStatus",
        learn_ref=target.learn_ref,
        aim_seq=target.aim_seqs[-1],
    )


def applied_steps(enrolment: Enrolment) -> list[tuple[str, date]]:
    """The lifecycle steps in the enrolment's history; a break that ended in withdrawal
    counts as the withdrawal (the ILR changes the break record's CompStatus to 3)."""
    steps: list[tuple[str, date]] = []
    for entry in enrolment.history:
        if entry.kind not in LIFECYCLE_KINDS:
            continue
        if entry.kind == "withdrawal" and steps and steps[-1][0] == "break":
            steps.pop()
        steps.append((entry.kind, entry.on))
    return steps


def _on(step: BaseModel) -> date:
    for name in ("started_on", "resumed_on", "completed_on", "withdrawn_on"):
        value = getattr(step, name, None)
        if isinstance(value, date):
            return value
    raise TypeError(f"not a lifecycle step: {type(step).__name__}")


def _pending(enrolment: Enrolment, target: AimTarget) -> list[BaseModel] | None:
    """The target's steps not yet applied, or None when the history contradicts them."""
    done = applied_steps(enrolment)
    wanted = [(step_kind(s), _on(s)) for s in target.steps]
    if wanted[: len(done)] == done:
        return list(target.steps[len(done) :])
    # The break that became a withdrawal: history ends on that break, the file withdraws.
    if (
        done
        and done[-1][0] == "break"
        and len(wanted) >= len(done)
        and wanted[: len(done) - 1] == done[:-1]
        and wanted[len(done) - 1][0] == "withdrawal"
        and wanted[len(done) - 1][1] >= done[-1][1]
    ):
        return list(target.steps[len(done) - 1 :])
    return None


def _apply(
    enrolment: Enrolment, steps: list[BaseModel], today: date, now: datetime
) -> tuple[Enrolment, list[Event]]:
    events: list[Event] = []
    for step in steps:
        transition = apply_progress(enrolment, step, today, now)
        enrolment = transition.enrolment
        events.append(transition.event)
    return enrolment, events


def _outcome_step(enrolment: Enrolment, target: AimTarget) -> OutcomeProgress | str | None:
    """An OutcomeRecorded for a completed enrolment whose outcome is now known; a message
    when the file contradicts a known outcome."""
    lc = enrolment.lifecycle
    if lc.status is not Status.COMPLETED or target.outcome is None:
        return None
    if lc.outcome == target.outcome:
        return None
    if lc.outcome not in (None, Outcome.NOT_YET_KNOWN):
        return "the outcome differs from the one accepted earlier; corrections are not applied"
    assert target.outcome_on is not None and lc.ended_on is not None
    return OutcomeProgress(
        kind="outcome", recorded_on=max(target.outcome_on, lc.ended_on), outcome=target.outcome
    )


def diff_aim(
    stored: Enrolment | None,
    target: AimTarget,
    provider: Provider,
    pseudonyms: Pseudonymiser,
    today: date,
    now: datetime,
) -> AimResult:
    """What to store and publish for one aim of the file."""
    issues: list[Issue] = []  # warnings so far, kept when the lifecycle refuses the aim
    try:
        if stored is None:
            return _new_aim(target, provider, pseudonyms, today, now)
        changed = _changed_details(stored, target)
        if changed is not None:
            issues.append(changed)
        return _known_aim(stored, target, issues, today, now)
    except IllegalTransition as exc:
        return AimResult(
            AimStatus.REJECTED,
            stored,
            issues=(*issues, _issue(target, "CG_Lifecycle_01", exc.message)),
        )
    except InvalidProgress as exc:
        message = "; ".join(e.message for e in exc.errors)
        return AimResult(
            AimStatus.REJECTED,
            stored,
            issues=(*issues, _issue(target, "CG_Lifecycle_02", message)),
        )


def _new_aim(
    target: AimTarget,
    provider: Provider,
    pseudonyms: Pseudonymiser,
    today: date,
    now: datetime,
) -> AimResult:
    """An aim not accepted before: accepted, then taken through the file's steps."""
    if target.submission is None:
        return AimResult(
            AimStatus.REJECTED,
            issues=(
                _issue(
                    target,
                    "CG_Restart_02",
                    "a restarted aim whose original aim was never accepted (neither "
                    "in this file nor an earlier one)",
                ),
            ),
        )
    enrolment, events = accept(target.submission, provider, pseudonyms, now)
    enrolment, more = _apply(enrolment, list(target.steps), today, now)
    return AimResult(AimStatus.CREATED, enrolment, None, (*events, *more))


def _changed_details(stored: Enrolment, target: AimTarget) -> Issue | None:
    """A warning when the file's details differ from those accepted (never applied)."""
    if target.submission is None or target.submission == stored.submission:
        return None
    old = stored.submission.model_dump(mode="json")
    new = target.submission.model_dump(mode="json")
    changed = [f for f in _COMPARED_FIELDS if old.get(f) != new.get(f)]
    if not changed:
        return None
    return _issue(
        target,
        "CG_Changed_01",
        "details differ from the enrolment accepted earlier ("
        + ", ".join(changed)
        + "); changes to accepted details are not applied",
        "warning",
    )


def _known_aim(
    stored: Enrolment, target: AimTarget, issues: list[Issue], today: date, now: datetime
) -> AimResult:
    """An aim accepted before: the steps it has not taken yet, then its outcome."""
    pending = _pending(stored, target)
    if pending is None:
        issues.append(
            _issue(
                target,
                "CG_Correction_01",
                "the aim's status or dates contradict what was accepted earlier; "
                "corrections are not applied (nothing of this aim was changed)",
                "warning",
            )
        )
        return AimResult(AimStatus.UNCHANGED, stored, issues=tuple(issues))
    enrolment, events = _apply(stored, pending, today, now)
    outcome = _outcome_step(enrolment, target)
    if isinstance(outcome, str):
        issues.append(_issue(target, "CG_Correction_02", outcome, "warning"))
    elif outcome is not None:
        enrolment, more = _apply(enrolment, [outcome], today, now)
        events += more
    if not events:
        return AimResult(AimStatus.UNCHANGED, stored, issues=tuple(issues))
    return AimResult(AimStatus.UPDATED, enrolment, stored.version, tuple(events), tuple(issues))
