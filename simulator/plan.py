"""The order traffic is sent in, and the coordinator's decisions. Pure.

Time in the simulation moves month by month: first every enrolment that starts in the
month (in batches), then every progress record dated in the month. Records of one
enrolment stay in date order (a chain); different enrolments' chains may run
concurrently. So an enrolment always exists before its progress, and its lifecycle
never sees a completion before the attendance that precedes it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from simulator.population import PlannedEnrolment, Population, ProgressStep


@dataclass(frozen=True)
class Month:
    month: tuple[int, int]
    enrolments: tuple[PlannedEnrolment, ...]
    chains: tuple[tuple[PlannedEnrolment, tuple[ProgressStep, ...]], ...]

    @property
    def operations(self) -> int:
        return len(self.enrolments) + sum(len(steps) for _, steps in self.chains)


def _month(d: date) -> tuple[int, int]:
    return (d.year, d.month)


def schedule(population: Population) -> list[Month]:
    starts: dict[tuple[int, int], list[PlannedEnrolment]] = defaultdict(list)
    steps: dict[tuple[int, int], dict[int, list[ProgressStep]]] = defaultdict(dict)
    enrolments = list(population.enrolments())
    for index, e in enumerate(enrolments):
        starts[_month(e.submission.start_date)].append(e)
        for step in e.steps:
            steps[_month(step.on)].setdefault(index, []).append(step)
    months = sorted(set(starts) | set(steps))
    out = []
    for m in months:
        batch = sorted(starts.get(m, []), key=lambda e: (e.submission.start_date, e.natural_key))
        chains = tuple(
            (enrolments[i], tuple(chain)) for i, chain in sorted(steps.get(m, {}).items())
        )
        out.append(Month(m, tuple(batch), chains))
    return out


def total_operations(months: Sequence[Month], population: Population) -> int:
    return len(population.volunteers) + sum(m.operations for m in months)


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def decision_for(seed: int, match: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """The coordinator's decision on a proposal: the same seed and pair always get the
    same answer, whatever order proposals arrive in."""
    participant, volunteer = str(match["participant"]), str(match["volunteer_id"])
    if _unit(str(seed), "accept", participant, volunteer) < float(policy["accept"]):
        return {"decision": "accept"}
    reasons: list[str] = list(policy["decline_reasons"])
    pick = int(_unit(str(seed), "reason", participant, volunteer) * len(reasons))
    return {"decision": "decline", "reason": reasons[min(pick, len(reasons) - 1)]}
