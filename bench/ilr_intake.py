"""Benchmark: ILR file intake against the JSON batch API, same learners, same run.

A seeded ILR file of N learners (simulator/ilr.py; default 50,000) is uploaded to the
enrolment service (streamed, POST /v1/ilr/submissions) and processed to its report; the
baseline sends the same learners' enrolments as JSON to POST /v1/enrolments/batch (1000
items per request, the API's limit). Each side runs in its own child process against the
same embedded broker and database (a fresh database each), so that its peak memory
(``ru_maxrss`` growth from just before the upload) is its own. The ILR side also does
what JSON cannot in the same calls: completions, withdrawals, breaks and outcomes.

Prints a Markdown table (figure | baseline | measured | ratio).

    uv run python bench/ilr_intake.py [--learners 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from devstack.embedded import EmbeddedKafka, EmbeddedMongo
from devstack.processes import free_port
from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app
from services.enrolment.settings import EnrolmentSettings
from shared.contracts.ilr import ETHNICITY_TO_ONS
from shared.kafka import ensure_topics
from shared.topics import all_topics
from simulator.ilr import IlrFileSpec, collection_days, iter_learners, write_ilr

BATCH = 1000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def json_items(spec: IlrFileSpec) -> Iterator[dict[str, Any]]:
    """The file's learners' enrolments as JSON submissions (acceptance only)."""
    for learner, chains in iter_learners(spec):
        for aim, records in chains:
            if aim.out_of_scope:
                continue
            ethnicity = ETHNICITY_TO_ONS.get(learner.ethnicity)
            yield {
                "learner_ref": learner.learn_ref,
                "given_names": learner.given,
                "family_name": learner.family,
                "postcode": learner.postcode,
                "date_of_birth": learner.dob.isoformat(),
                "sex": learner.sex,
                "ethnicity": ethnicity.value if ethnicity else None,
                "combined_authority": spec.authority.value,
                "local_authority": learner.local_authority,
                "learning_aim_ref": records[0].aim_ref,
                "programme": aim.programme.value,
                "level": aim.level.value if aim.level else None,
                "start_date": aim.start.isoformat(),
                "planned_end_date": aim.planned_end.isoformat(),
                "planned_hours": max(1, ((aim.planned_end - aim.start).days // 7 + 1) * 3),
                "fund_model": 38,
            }


async def child(mode: str, kafka: str, mongo: str, learners: int, workdir: str) -> dict[str, Any]:
    logging.disable(logging.INFO)
    settings = EnrolmentSettings(
        kafka_bootstrap_servers=kafka,
        mongodb_url=mongo,
        mongodb_database=f"cg_bench_ilr_{mode}_{os.getpid()}",
        consumer_group=f"bench-ilr-{mode}-{os.getpid()}",
        outbox_poll_interval_s=0.2,
        rate_limit_burst=10_000_000,
        rate_limit_per_s=1_000_000,
        outbox_backlog_limit=10_000_000,
        ilr_chunk_learners=500,
        log_json=False,
    )
    _, _, as_of = collection_days(date.today())
    ukprn = "1" + "".join(random.choices(string.digits, k=7))
    # ``learners`` learners in the file (drawn from a larger population: only those whose
    # aims have started by the file's day are in it).
    spec = IlrFileSpec(ukprn, learners * 10, as_of, seed=2026, limit=learners)
    path = Path(workdir) / f"ilr-{mode}.xml"
    if mode == "ilr":
        with path.open("wb") as handle:
            truth = write_ilr(spec, handle)
        enrolments = len(truth.enrolments)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=3600
        ) as client:
            admin = ProviderAdmin(app.state.runtime.db)
            key = await admin.register_provider("Bench College", ukprn, ["E47000001"])
            auth = {"Authorization": f"Bearer {key}"}
            before = rss_mib()
            started = time.perf_counter()
            if mode == "ilr":

                async def chunks() -> AsyncIterator[bytes]:
                    with path.open("rb") as handle:
                        while block := handle.read(256 * 1024):
                            yield block

                response = await client.post(
                    "/v1/ilr/submissions",
                    content=chunks(),
                    headers={**auth, "Content-Type": "application/xml"},
                    params={"wait": 60},
                )
                assert response.status_code in (200, 202), response.text
                href = response.json()["href"]
                while True:
                    got = (await client.get(href, headers=auth, params={"wait": 60})).json()
                    if got["status"] != "processing":
                        break
                assert got["status"] == "completed", got
                created = got["summary"]["aims"]["created"]
                events = sum(got["summary"]["events"].values())
                assert created == enrolments, (created, enrolments)
                file_mib = path.stat().st_size / 2**20
            else:
                created, events, batch = 0, 0, []
                for item in json_items(spec):
                    batch.append(item)
                    if len(batch) == BATCH:
                        created += await _post(client, auth, batch)
                        batch = []
                if batch:
                    created += await _post(client, auth, batch)
                events = created
                file_mib = 0.0
            elapsed = time.perf_counter() - started
            peak = rss_mib()
    return {
        "mode": mode,
        "learners": learners,
        "enrolments": created,
        "events": events,
        "seconds": elapsed,
        "learners_per_s": learners / elapsed,
        "rss_growth_mib": max(0.0, peak - before),
        "rss_peak_mib": peak,
        "file_mib": file_mib,
    }


async def _post(client: httpx.AsyncClient, auth: dict[str, str], batch: list[Any]) -> int:
    response = await client.post("/v1/enrolments/batch", json={"items": batch}, headers=auth)
    assert response.status_code == 200, response.text[:500]
    summary = response.json()["summary"]
    assert summary["rejected"] == 0, response.text[:2000]
    return int(summary["created"])


def run_child(mode: str, kafka: str, mongo: str, learners: int, workdir: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--kafka",
            kafka,
            "--mongo",
            mongo,
            "--learners",
            str(learners),
            "--workdir",
            workdir,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)  # kept if a later side fails
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=50_000)
    parser.add_argument("--child", choices=["ilr", "json"])
    parser.add_argument("--kafka")
    parser.add_argument("--mongo")
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    if args.child:
        result = asyncio.run(child(args.child, args.kafka, args.mongo, args.learners, args.workdir))
        print(json.dumps(result))
        return 0
    workdir = tempfile.mkdtemp(prefix="cg-bench-ilr-")
    kafka = EmbeddedKafka(free_port(), Path(workdir))
    mongo = EmbeddedMongo(free_port(), None, Path(workdir))
    try:
        kafka.start()
        mongo.start()
        asyncio.run(ensure_topics(kafka.bootstrap_servers, all_topics()))
        ilr = run_child("ilr", kafka.bootstrap_servers, mongo.url, args.learners, workdir)
        js = run_child("json", kafka.bootstrap_servers, mongo.url, args.learners, workdir)
    finally:
        kafka.stop()
        mongo.stop()
    print(
        f"{args.learners:,} learners ({ilr['enrolments']:,} enrolments; ILR file "
        f"{ilr['file_mib']:.1f} MiB, {ilr['events']:,} events incl. completions, withdrawals, "
        f"breaks and outcomes) against the same enrolments as JSON batches of {BATCH} "
        "(acceptances only). Each side in its own process on the same embedded broker and "
        "database; memory = growth of the process's peak RSS during the upload.\n"
    )
    print("| figure | baseline (JSON batch) | measured (ILR file) | ratio |")
    print("|---|---:|---:|---:|")
    rows = [
        ("learners/s, stored", js["learners_per_s"], ilr["learners_per_s"], "{:,.0f}"),
        (
            "events/s written (accepted + lifecycle)",
            js["events"] / js["seconds"],
            ilr["events"] / ilr["seconds"],
            "{:,.0f}",
        ),
        ("seconds", js["seconds"], ilr["seconds"], "{:,.1f}"),
        ("peak RSS growth (MiB)", js["rss_growth_mib"], ilr["rss_growth_mib"], "{:,.1f}"),
        ("peak RSS (MiB)", js["rss_peak_mib"], ilr["rss_peak_mib"], "{:,.0f}"),
    ]
    for name, base, measured, fmt in rows:
        ratio = measured / base if base else float("nan")
        print(f"| {name} | {fmt.format(base)} | {fmt.format(measured)} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
