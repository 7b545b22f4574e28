"""Soak: the whole stack killed at once (services, broker and database, kill -9), again
and again, over a long stream. Not part of the test suite.

One fresh embedded broker and database; all three services as processes. The stream of
``--events`` submissions is cut into ``--trials`` chunks. For each chunk: stream it on
the Kafka intake topic, kill -9 every process at a random point of the chunk's progress
(how many of it enrolment had stored), start the database, the broker (an empty log:
memory storage) and the services again, let providers re-send the chunk (intake
de-duplicates), and wait until every figure is exact again: each submission stored
once in enrolment and counted once in the reports, each opt-in once in matching's
pool, each match counted once. Figures come from the services' databases.

Printed per trial and in total: events lost / duplicated (must be 0 / 0), time for the
processes to be up again, and recovery time (from the restart until every figure is
exact, which includes processing the re-sent chunk). The baseline is the same stream's
first chunk with no fault, measured in the same run: the recovery ratio is recovery
time / clean chunk time.

    uv run python bench/soak_broker_loss.py                              # 20 trials, 100,000 events
    uv run python bench/soak_broker_loss.py --events 10000 --trials 20   # a shorter soak
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.broker import start_broker
from tests.reliability.config import log_dir
from tests.reliability.database import Database
from tests.reliability.faults import (
    figures,
    kill_everything_mid_chunk,
    resend,
    settle,
)
from tests.reliability.pipeline import Pipeline

RESULTS = Path(__file__).resolve().parent / "results" / "soak_broker_loss.json"


async def soak(events: int, trials: int, seed: int) -> dict[str, Any]:
    logs = log_dir()
    database = Database(logs)
    await asyncio.to_thread(database.start)
    broker = await start_broker(logs)
    p = Pipeline(broker, database.url, logs)
    rng = random.Random(seed)
    chunk_size = max(10, events // (trials + 1))
    rows: list[dict[str, Any]] = []
    try:
        await p.prepare()
        await p.start()
        await p.register_volunteers(per_borough=max(4, chunk_size // 100), capacity=10)

        # Baseline: one chunk, no fault.
        began = time.monotonic()
        await resend(p, p.new_submissions(chunk_size, rng))
        await settle(p, "baseline chunk", timeout_s=3600)
        clean_s = time.monotonic() - began
        sys.stderr.write(f"baseline chunk of {chunk_size}: {clean_s:.1f}s\n")

        for trial in range(trials):
            chunk = p.new_submissions(chunk_size, rng)
            point = rng.randint(0, chunk_size - 1)
            up_s = await kill_everything_mid_chunk(
                p, broker, database, chunk, point, timeout_s=3600
            )
            up_at = time.monotonic()
            await resend(p, chunk)
            final = await settle(p, f"trial {trial + 1}", timeout_s=3600)
            # From the restart until every figure is exact again.
            recovery_s = up_s + time.monotonic() - up_at
            rows.append(
                {
                    "trial": trial + 1,
                    "killed_at": f"{point}/{chunk_size}",
                    "submitted": final.submitted,
                    "lost": final.lost,
                    "duplicated": final.duplicated,
                    "up_s": round(up_s, 1),
                    "recovery_s": round(recovery_s, 1),
                }
            )
            sys.stderr.write(json.dumps(rows[-1]) + "\n")
        final = await figures(p)
        recoveries = [r["recovery_s"] for r in rows]
        return {
            "events": final.submitted,
            "trials": trials,
            "seed": seed,
            "lost": final.lost,
            "duplicated": final.duplicated,
            "exact": final.exact,
            "clean_chunk_s": round(clean_s, 1),
            "recovery_s_median": round(statistics.median(recoveries), 1),
            "recovery_s_max": round(max(recoveries), 1),
            "recovery_ratio_median": round(statistics.median(recoveries) / clean_s, 2),
            "up_s_max": max(r["up_s"] for r in rows),
            "per_trial": rows,
            "figures": str(final),
        }
    finally:
        p.stop()
        await asyncio.to_thread(broker.kafka.stop)
        await asyncio.to_thread(database.stop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    result = asyncio.run(soak(args.events, args.trials, args.seed))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "per_trial"}
    print(json.dumps(summary, indent=2))
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
