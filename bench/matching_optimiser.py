"""Benchmark: the matching optimiser (whole-pool optimal assignment) against the
greedy first-come baseline, on seeded random pools of a few sizes, both measured in
the same run. Prints a Markdown table (figure | baseline | measured | ratio).

    uv run python bench/matching_optimiser.py [--seeds 3]

``random_pool`` is also used by the unit tests. A pool resembles one combined
authority's waiting list: people spread over its boroughs, a few availability slots
each, mixed backgrounds (some without consent to be matched on them), some gender
preferences, a few lapsed DBS checks and declined pairs, and fewer
volunteer places than participants so that choices matter.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from services.matching.domain import (
    BridgingProfile,
    ParticipantView,
    Proposal,
    VolunteerView,
    Weights,
    greedy_assignment,
    optimal_assignment,
    total_objective,
    total_score,
)
from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    Religion,
    Sex,
)

SLOTS = tuple(
    f"{d}-{p}"
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    for p in ("am", "pm", "eve")
)
INTERESTS = (
    "cooking", "football", "gardening", "music", "walking", "reading",
    "films", "crafts", "cricket", "chess", "history", "photography",
)  # fmt: skip
LANGUAGES = ("en", "ar", "ur", "pl", "ro", "pa", "bn", "so", "uk", "fa", "ti", "zh")
COUNTRIES = ("GB", "PK", "IN", "BD", "PL", "RO", "SY", "UA", "SO", "ER", "IR", "CN", "NG", "IE")


def _profile(rng: random.Random, consent_rate: float) -> BridgingProfile | None:
    if rng.random() >= consent_rate:
        return None
    ethnicity = rng.choice(list(Ethnicity))
    return BridgingProfile(
        ethnicity_group=ethnicity.group,
        religion=rng.choice(list(Religion)),
        country_of_birth=rng.choice(COUNTRIES),
        age_band=rng.choice(list(AgeBand)),
    )


def random_pool(
    seed: int,
    volunteers: int,
    participants: int,
    *,
    authority: CombinedAuthority = CombinedAuthority.GREATER_MANCHESTER,
    now: datetime,
    consent_rate: float = 0.7,
    max_capacity: int = 3,
    max_slots: int = 4,
) -> tuple[list[VolunteerView], list[ParticipantView]]:
    rng = random.Random(seed)
    boroughs = sorted(LOCAL_AUTHORITIES[authority])
    today: date = now.date()
    vols = [
        VolunteerView(
            volunteer_id=f"v{seed}-{i:05d}",
            combined_authority=authority,
            local_authority=rng.choice(boroughs),
            availability=frozenset(rng.sample(SLOTS, rng.randint(1, max_slots))),
            interests=frozenset(rng.sample(INTERESTS, rng.randint(0, 4))),
            languages=frozenset(["en", *rng.sample(LANGUAGES, rng.randint(0, 2))]),
            gender=rng.choice([Sex.FEMALE, Sex.MALE]),
            gender_preference=rng.choice([Sex.FEMALE, Sex.MALE]) if rng.random() < 0.15 else None,
            dbs_expires_on=today + timedelta(days=rng.randint(-30, 700)),
            free_capacity=rng.randint(1, max_capacity),
            bridging=_profile(rng, consent_rate),
        )
        for i in range(volunteers)
    ]
    parts = []
    for i in range(participants):
        declined = frozenset(
            rng.choice(vols).volunteer_id for _ in range(rng.randint(0, 2)) if vols
        )
        parts.append(
            ParticipantView(
                participant=f"p{seed}-{i:05d}",
                combined_authority=authority,
                local_authority=rng.choice(boroughs),
                availability=frozenset(rng.sample(SLOTS, rng.randint(1, max_slots))),
                interests=frozenset(rng.sample(INTERESTS, rng.randint(0, 4))),
                languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 2))),
                sex=rng.choice([Sex.FEMALE, Sex.MALE, None]),
                gender_preference=rng.choice([Sex.FEMALE, Sex.MALE])
                if rng.random() < 0.25
                else None,
                declined_volunteers=declined,
                previous_volunteers=frozenset(),
                waiting_since=now - timedelta(hours=rng.uniform(0, 24 * 60)),
                bridging=_profile(rng, consent_rate),
            )
        )
    return vols, parts


Assigner = Callable[..., list[Proposal]]
SIZES = ((25, 50), (100, 200), (250, 500), (500, 1000), (1000, 2000))
NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _timed(
    assign: Assigner, vols: list[VolunteerView], parts: list[ParticipantView], w: Weights
) -> tuple[list[Proposal], float]:
    started = time.perf_counter()
    proposals = assign(vols, parts, w, today=NOW.date(), now=NOW)
    return proposals, time.perf_counter() - started


def _peak_mib(
    assign: Assigner, vols: list[VolunteerView], parts: list[ParticipantView], w: Weights
) -> float:
    """Peak memory Python allocates during one assignment (numpy's arrays included), in
    a run of its own: tracing slows the code, so the timed run is untraced."""
    tracemalloc.start()
    try:
        assign(vols, parts, w, today=NOW.date(), now=NOW)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _bridging(proposals: list[Proposal]) -> int:
    return sum(1 for p in proposals if p.breakdown.bridging_dimensions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="pools per size (seeds 1..N)")
    args = parser.parse_args(argv)
    weights = Weights()
    warm_vols, warm_parts = random_pool(0, 20, 40, now=NOW)
    for assign in (greedy_assignment, optimal_assignment):  # import/JIT warm-up, not timed
        assign(warm_vols, warm_parts, weights, today=NOW.date(), now=NOW)
    print("Optimal assignment (scipy `linear_sum_assignment`, capacity expanded into slots) vs")
    print("the greedy first-come baseline (each participant in waiting order takes the best")
    print(f"free feasible volunteer), on the same seeded pools; mean over {args.seeds} seed(s).")
    print("Score = published pair scores; objective = score + waiting priority (what is")
    print("maximised). Times are wall-clock for scoring plus assignment; peak memory is")
    print("what Python allocates during one assignment (tracemalloc, in a separate run).")
    print()
    header = (
        "pool (participants / volunteers)",
        "figure",
        "baseline (greedy)",
        "measured (optimal)",
    )
    print(f"| {' | '.join(header)} | ratio |")
    print("|---|---|---:|---:|---:|")
    for n_vols, n_parts in SIZES:
        rows: dict[str, tuple[list[float], list[float]]] = {
            k: ([], [])
            for k in (
                "total score",
                "objective",
                "participants matched",
                "cross-background pairs",
                "time (ms)",
                "peak memory (MiB)",
            )
        }
        for seed in range(1, args.seeds + 1):
            vols, parts = random_pool(seed, n_vols, n_parts, now=NOW)
            greedy, t_greedy = _timed(greedy_assignment, vols, parts, weights)
            optimal, t_optimal = _timed(optimal_assignment, vols, parts, weights)
            for key, baseline, measured in (
                ("total score", total_score(greedy), total_score(optimal)),
                ("objective", total_objective(greedy), total_objective(optimal)),
                ("participants matched", len(greedy), len(optimal)),
                ("cross-background pairs", _bridging(greedy), _bridging(optimal)),
                ("time (ms)", t_greedy * 1000, t_optimal * 1000),
                (
                    "peak memory (MiB)",
                    _peak_mib(greedy_assignment, vols, parts, weights),
                    _peak_mib(optimal_assignment, vols, parts, weights),
                ),
            ):
                rows[key][0].append(baseline)
                rows[key][1].append(measured)
        for key, (baselines, measurements) in rows.items():
            b, m = statistics.fmean(baselines), statistics.fmean(measurements)
            ratio = m / b if b else float("nan")
            print(f"| {n_parts} / {n_vols} | {key} | {b:,.1f} | {m:,.1f} | {ratio:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
