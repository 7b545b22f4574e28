"""The reporting oracle: aggregates computed in memory from the distinct events, exactly as
the projection defines them (the reporting domain's own ``project_batch``), compared
cell by cell with the documents of the live read-model generation.

It reads the read model itself, not the report API: the API rounds, perturbs and
withholds small cells (docs/disclosure.md), and the guarantee under test is that every
cell of what the reports are computed from is exact, including the ones no report shows.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Iterable,
)
from dataclasses import dataclass
from datetime import date

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.reporting.domain.projection import (
    AGGREGATES,
    AggregateName,
    LoadedStates,
    aggregate_id,
    full_counts,
    is_consumed,
    project_batch,
    validate_event,
)
from services.reporting.repository import AGGREGATE_COLLECTIONS, READ_MODEL_COLLECTIONS
from services.reporting.settings import ReportingSettings
from shared.cloudevents import CloudEvent, Event
from shared.contracts.reference import Level, Programme, WithdrawalReason
from shared.learner_keys import KeyBatch
from tests.factories.reporting import (
    Pair,
    accepted,
    assessed,
    attendance,
    cloud,
    completed,
    opted_in,
    withdrawn,
)
from tests.reliability.config import (
    Doc,
)


@contextlib.asynccontextmanager
async def mongo(url: str) -> AsyncIterator[AsyncMongoClient[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True)
    try:
        yield client
    finally:
        await client.close()


AggregateTable = dict[tuple[str, str], dict[str, int]]


def expected_aggregates(events: Iterable[CloudEvent[Event]]) -> AggregateTable:
    """Each distinct ``ce_id`` once, in the given (log) order: key events are noted and
    sealed personal fields opened with the reporting service's key ring, as its
    projector does, then the whole stream is projected as one batch from empty states."""
    keys = KeyBatch(ReportingSettings().key_ring(), {}, set())
    seen: set[str] = set()
    chosen: list[Event] = []
    for ce in events:
        if ce.id in seen:
            continue
        seen.add(ce.id)
        keys.note(ce.data)
        if not is_consumed(ce.data):
            continue
        validate_event(ce.data)
        chosen.append(keys.reveal(ce.data))
    outcome = project_batch(LoadedStates(), chosen)
    assert not outcome.failed, f"events that cannot apply: {outcome.failed[:3]}"
    table: AggregateTable = {}
    for (name, key), counts in outcome.deltas.items():
        table[(AGGREGATE_COLLECTIONS[name], aggregate_id(key))] = full_counts(name, counts)
    return table


async def actual_aggregates(db: AsyncDatabase[Doc]) -> AggregateTable:
    control = await db["projection_control"].find_one({"_id": "active"})
    generation = int(control["generation"]) if control else 1
    table: AggregateTable = {}
    for name, collection in AGGREGATE_COLLECTIONS.items():
        async for doc in db[f"g{generation}_{collection}"].find({}):
            table[(collection, doc["_id"])] = full_counts(name, doc["counts"])
    return table


async def reporting_counts(db: AsyncDatabase[Doc]) -> dict[str, int]:
    control = await db["projection_control"].find_one({"_id": "active"})
    generation = int(control["generation"]) if control else 1
    out: dict[str, int] = {}
    for name in ("enrolments", "matches", "participants", "applied_events"):
        out[name] = await db[f"g{generation}_{name}"].count_documents({})
    totals: Counter[str] = Counter()
    wanted: tuple[tuple[AggregateName, str], ...] = (
        ("outcomes", "agg_outcomes"),
        ("matching", "agg_matching"),
    )
    for name, collection in wanted:
        async for doc in db[f"g{generation}_{collection}"].find({}):
            for f in AGGREGATES[name].fields:
                totals[f"{name}.{f}"] += int(doc["counts"].get(f, 0))
    out.update(totals)
    return out


@dataclass(frozen=True)
class Comparison:
    """Differences between the expected and the stored aggregates, as counts."""

    missing: int  # sum of counts expected but not stored (lost)
    extra: int  # sum of counts stored beyond expectation (counted twice)
    cells: int  # aggregate cells compared

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.extra == 0


def compare(expected: AggregateTable, actual: AggregateTable) -> Comparison:
    missing = extra = cells = 0
    for key in expected.keys() | actual.keys():
        want, got = expected.get(key, {}), actual.get(key, {})
        for f in want.keys() | got.keys():
            cells += 1
            diff = got.get(f, 0) - want.get(f, 0)
            if diff > 0:
                extra += diff
            else:
                missing -= diff
    return Comparison(missing, extra, cells)


LAS = {
    # A borough from each of four combined authorities.
    "E08000004": "Oldham",
    "E08000010": "Wigan",
    "E08000025": "Birmingham",
    "E06000023": "Bristol",
}


def reporting_stream(n_events: int, rng: random.Random) -> list[CloudEvent[Event]]:
    """About ``n_events`` valid events: per learner an acceptance and some of attendance
    (additive: counted twice would show), assessment, completion or withdrawal, opt-in,
    and a match (proposed, then confirmed or declined, sometimes ended). Events of one
    learner are in order (one partition: key = learner); match events are in order per
    local authority (key)."""
    year = rng.randint(1950, 1999)
    enrolment_events: list[CloudEvent[Event]] = []
    match_events: list[CloudEvent[Event]] = []
    while len(enrolment_events) + len(match_events) < n_events:
        la = rng.choice(list(LAS))
        programme = rng.choice([Programme.ESOL, Programme.ESOL, Programme.DIGITAL])
        level = Level.ENTRY_1 if programme is Programme.ESOL else None
        start = date(year, rng.randint(1, 12), rng.randint(1, 28))
        e = accepted(la=la, programme=programme, level=level, start=start)
        enrolment_events.append(cloud(e))
        if rng.random() < 0.5:
            enrolment_events.append(cloud(attendance(e, planned=10, attended=rng.randint(0, 10))))
        if programme is Programme.ESOL and rng.random() < 0.3:
            enrolment_events.append(cloud(assessed(e, Level.ENTRY_2)))
        fate = rng.random()
        if fate < 0.4:
            enrolment_events.append(cloud(completed(e)))
        elif fate < 0.6:
            enrolment_events.append(cloud(withdrawn(e, WithdrawalReason.HEALTH)))
        if rng.random() < 0.3:
            enrolment_events.append(cloud(opted_in(e)))
            pair = Pair(e)
            match_events.append(cloud(pair.proposed()))
            if rng.random() < 0.6:
                match_events.append(cloud(pair.confirmed(after_days=rng.randint(2, 40))))
                if rng.random() < 0.3:
                    match_events.append(cloud(pair.ended()))
            else:
                match_events.append(cloud(pair.declined()))
    # Interleave the two topics as they would arrive; per-key order is kept by merging.
    out: list[CloudEvent[Event]] = []
    i = j = 0
    while i < len(enrolment_events) or j < len(match_events):
        if j >= len(match_events) or (i < len(enrolment_events) and rng.random() < 0.7):
            out.append(enrolment_events[i])
            i += 1
        else:
            out.append(match_events[j])
            j += 1
    return out


async def snapshot(db: AsyncDatabase[Doc]) -> dict[str, list[bytes]]:
    """Every read-model document of the live reporting generation, as raw BSON."""
    raw = db.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))
    control = await db["projection_control"].find_one({"_id": "active"})
    generation = int(control["generation"]) if control else 1
    out: dict[str, list[bytes]] = {}
    for name in READ_MODEL_COLLECTIONS:
        docs = await raw[f"g{generation}_{name}"].find({}).sort("_id", 1).to_list()
        out[name] = [bytes(d.raw) for d in docs]
    return out
