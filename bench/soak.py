"""Soak: the whole platform under repeated kill -9, at the issue's size.

Two runs, each on a fresh embedded broker and database, with the same seeded stream of
submissions (Kafka intake → enrolment → matching → reporting, all three as processes):

* baseline: no faults;
* soak: during the stream, ``--trials`` rounds in which every service is SIGKILLed at
  its own random moment and restarted at once.

Both runs must end exactly once (every submission one enrolment, one event id, one
pool entry; every match published and counted once; reports equal to a projection of
the distinct events; no dead letter). The figure is end-to-end throughput (submissions
per second from the first record published until the whole pipeline has drained);
the ratio is soak / baseline, both measured in this run.

    uv run python bench/soak.py                                   # modest (bench/run.py)
    uv run python bench/soak.py --submissions 20000 --trials 10   # the issue's figure
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.broker import start_broker
from tests.reliability.config import log_dir
from tests.reliability.database import Database
from tests.reliability.pipeline import SERVICES, Pipeline

RATE_PER_S = 150.0  # submissions offered per second (above what the pipeline drains)


async def run(submissions: int, trials: int, seed: int, *, faults: bool) -> dict[str, Any]:
    logs = log_dir()
    database = Database(logs)
    await asyncio.to_thread(database.start)
    broker = await start_broker(logs)
    p = Pipeline(broker, database.url, logs)
    rng = random.Random(seed)
    kills = 0
    try:
        await p.prepare()
        await p.start()
        await p.register_volunteers(per_borough=20, capacity=10)
        records = [s.record() for s in p.new_submissions(submissions, rng)]
        duration = submissions / RATE_PER_S
        started = time.monotonic()
        async with p.publisher() as publisher:
            stream = asyncio.create_task(publisher.paced(records, rate_per_s=RATE_PER_S))
            if faults:
                for trial in range(trials):
                    # Rounds spread over the stream, each service at its own moment.
                    window = duration / max(trials, 1)
                    round_start = started + trial * window

                    async def crash(name: str, at: float) -> None:
                        await asyncio.sleep(max(0.0, at - time.monotonic()))
                        p[name].kill()
                        p[name].start()

                    await asyncio.gather(
                        *(crash(n, round_start + rng.uniform(0.1, 0.9) * window) for n in SERVICES)
                    )
                    kills += len(SERVICES)
                    await p.wait_ready()
                    sys.stderr.write(f"  round {trial + 1}/{trials} done\n")
            await stream
        await p.wait_drained(timeout_s=3600)
        elapsed = time.monotonic() - started
        verdict = await p.verify()
        return {
            "submissions": submissions,
            "seconds": round(elapsed, 1),
            "per_s": round(submissions / elapsed, 1),
            "kills": kills,
            "exact": verdict.exact,
            "figures": {
                name: {"lost": f.lost, "duplicated": f.duplicated, **f.notes}
                for name, f in verdict.figures.items()
            },
            "report_cells": verdict.comparison.cells,
            "report_missing": verdict.comparison.missing,
            "report_extra": verdict.comparison.extra,
            "dead_letters": verdict.dead_letters,
        }
    finally:
        p.stop()
        await asyncio.to_thread(broker.kafka.stop)
        await asyncio.to_thread(database.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    baseline = asyncio.run(run(args.submissions, 0, args.seed, faults=False))
    sys.stderr.write(f"baseline: {json.dumps(baseline)}\n")
    soak = asyncio.run(run(args.submissions, args.trials, args.seed, faults=True))
    sys.stderr.write(f"soak: {json.dumps(soak)}\n")
    if args.json:
        args.json.write_text(json.dumps({"baseline": baseline, "soak": soak}, indent=2))

    def lost_dup(r: dict[str, Any]) -> tuple[int, int]:
        lost = sum(f["lost"] for f in r["figures"].values()) + r["report_missing"]
        dup = sum(f["duplicated"] for f in r["figures"].values()) + r["report_extra"]
        return lost, dup

    (b_lost, b_dup), (s_lost, s_dup) = lost_dup(baseline), lost_dup(soak)
    print(f"{args.submissions} submissions, {soak['kills']} kill -9 in {args.trials} rounds\n")
    print("| figure | baseline (no faults) | measured (kill -9 rounds) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| end-to-end submissions/s | {baseline['per_s']} | {soak['per_s']} | "
        f"{soak['per_s'] / baseline['per_s']:.2f} |"
    )
    print(
        f"| drain time (s) | {baseline['seconds']} | {soak['seconds']} | "
        f"{soak['seconds'] / baseline['seconds']:.2f} |"
    )
    print(f"| lost / duplicated | {b_lost} / {b_dup} | {s_lost} / {s_dup} | — |")
    print(f"| report cells compared | {baseline['report_cells']} | {soak['report_cells']} | — |")
    print(f"| dead letters | {baseline['dead_letters']} | {soak['dead_letters']} | — |")
    return 0 if baseline["exact"] and soak["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
