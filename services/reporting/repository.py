"""MongoDB adapter of the reporting service: read models, positions, event ids, reports.

Layout (all in the service's own database):

* ``projection_control``: one document ``{_id: "active", generation: N}`` naming the
  live *generation* of read models.
* per generation ``g<N>_*`` collections: ``enrolments``, ``participants``, ``matches``
  (one current-state document each), ``agg_outcomes``, ``agg_equality``,
  ``agg_matching``, ``agg_participants``, ``agg_bridges``, ``agg_waiting_groups``,
  ``agg_esol_bridged`` (aggregates), ``applied_events`` (ce_ids
  already applied) and ``positions`` (per topic-partition, the highest offset applied).

A batch is applied in one transaction (:class:`ProjectionUnitOfWork`): it reads the
positions and known event ids, loads the states it touches, writes the changed states,
one bulk ``$inc`` per aggregate collection, the new event ids and positions, and
commits. A rebuild fills generation N+1 from the beginning of the topics and swaps by
flipping ``projection_control`` in a transaction that also *seals* every position
document of generation N, so a live batch still in flight on N conflicts, retries and
lands on N+1 (see README "Exactly-once effect").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self, TypeVar

from pymongo import DeleteMany, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.projection import (
    AGGREGATES,
    AggregateName,
    BatchOutcome,
    Counts,
    EnrolmentState,
    LoadedStates,
    MatchState,
    ParticipantState,
    StateKeys,
    aggregate_id,
    enrolment_from_doc,
    full_counts,
    match_from_doc,
    participant_from_doc,
    state_to_doc,
)
from shared.mongo import in_chunks, is_duplicate_key
from shared.positions import Position
from shared.retries import retry_on_conflict
from shared.unit_of_work import MongoUnitOfWork

logger = logging.getLogger(__name__)

T = TypeVar("T")
TopicPartition = tuple[str, int]
Doc = dict[str, Any]

CONTROL = "projection_control"
# Applied event ids are kept this long: longer than the producers' outbox retention (the
# window in which events lost with a broker's log are re-published) and than any topic's
# retention, so every redelivery or re-publication still finds its id.
DEDUP_RETENTION_S = 8 * 24 * 3600
STATE_COLLECTIONS = ("enrolments", "participants", "matches")
AGGREGATE_COLLECTIONS: dict[AggregateName, str] = {
    "outcomes": "agg_outcomes",
    "equality": "agg_equality",
    "matching": "agg_matching",
    "participants": "agg_participants",
    "bridges": "agg_bridges",
    "waiting_groups": "agg_waiting_groups",
    "esol_bridged": "agg_esol_bridged",
    "qar": "agg_qar",  # issue 15: QAR cohorts by hybrid end year
}
BOOKKEEPING = ("applied_events", "positions")
ALL_COLLECTIONS = (*STATE_COLLECTIONS, *AGGREGATE_COLLECTIONS.values(), *BOOKKEEPING)
READ_MODEL_COLLECTIONS = (*STATE_COLLECTIONS, *AGGREGATE_COLLECTIONS.values())


class GenerationRetired(Exception):
    """The generation a batch was being applied to has been swapped out by a rebuild."""


class AggregateInsertedMeanwhile(Exception):
    """A batch inserted an aggregate document that another transaction inserted first."""


class WriteMetrics(Protocol):
    def written(self, collection: str, operations: int) -> None: ...


class _NoMetrics:
    def written(self, collection: str, operations: int) -> None:
        return None


# ---------------------------------------------------------------------------------------
# The ports the service layer uses (in-memory fakes implement these in unit tests).


class Positions(Protocol):
    """Per topic-partition, the highest offset applied and the event found there."""

    async def get(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Position]:
        """The positions of ``partitions`` (absent = nothing applied)."""
        ...

    async def advance(self, positions: Mapping[TopicPartition, Position]) -> None: ...


class AppliedEvents(Protocol):
    """The ``ce_id`` of every event applied (de-duplication is by event id)."""

    async def known(self, ids: Sequence[str]) -> set[str]: ...

    async def add(self, ids: Sequence[str], at: datetime) -> None: ...


class States(Protocol):
    """The current state of each enrolment, participant and match."""

    async def load(self, keys: StateKeys) -> LoadedStates: ...

    async def save(self, outcome: BatchOutcome) -> None: ...


class Aggregates(Protocol):
    """The counters the reports sum."""

    async def add(self, outcome: BatchOutcome) -> None:
        """Add a batch's deltas (deleting counters left all zero)."""
        ...


class UnitOfWork(Protocol):
    """The projection's unit of work as the projector uses it (one per call)."""

    @property
    def positions(self) -> Positions: ...
    @property
    def applied_events(self) -> AppliedEvents: ...
    @property
    def states(self) -> States: ...
    @property
    def aggregates(self) -> Aggregates: ...
    @property
    def now(self) -> datetime: ...

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction, retrying it whole on transient conflicts. Outside
        it the repositories read committed data (a hint; the transaction re-checks)."""
        ...


# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    db: AsyncDatabase[Doc]
    number: int

    def name(self, collection: str) -> str:
        return f"g{self.number}_{collection}"

    def __getitem__(self, collection: str) -> AsyncCollection[Doc]:
        return self.db[self.name(collection)]

    def aggregate(self, name: AggregateName) -> AsyncCollection[Doc]:
        return self[AGGREGATE_COLLECTIONS[name]]

    async def ensure(self, dedup_retention_s: int = DEDUP_RETENTION_S) -> None:
        """Create the collections and indexes (idempotent; collections must exist before
        a transaction writes to them on some servers). Applied event ids expire after
        ``dedup_retention_s`` (see docs/delivery.md, "Bounded growth")."""
        existing = set(await self.db.list_collection_names())
        for name in ALL_COLLECTIONS:
            if self.name(name) not in existing:
                try:
                    await self.db.create_collection(self.name(name))
                except CollectionInvalid:
                    logger.debug("collection %s created concurrently", self.name(name))
        await self["applied_events"].create_index("at", expireAfterSeconds=dedup_retention_s)
        await self["enrolments"].create_index("learner")
        # Integration reports (issue 16): ESOL progression times, waits by group.
        await self["enrolments"].create_index(
            [("combined_authority", 1), ("programme", 1), ("start_month", 1)]
        )
        await self["participants"].create_index([("combined_authority", 1), ("opted_in_month", 1)])
        await self["matches"].create_index(
            [("combined_authority", 1), ("local_authority", 1), ("confirmed_month", 1)]
        )
        for name in AGGREGATE_COLLECTIONS.values():
            await self[name].create_index([("combined_authority", 1), ("local_authority", 1)])

    async def drop(self) -> None:
        for name in ALL_COLLECTIONS:
            await self[name].drop()


def position_id(tp: TopicPartition) -> str:
    return f"{tp[0]}:{tp[1]}"


def position_from_doc(doc: Doc) -> Position:
    return Position(int(doc["offset"]), doc.get("ce_id"))


async def active_generation(
    db: AsyncDatabase[Doc], session: AsyncClientSession | None = None
) -> int:
    doc = await db[CONTROL].find_one({"_id": "active"}, session=session)
    return int(doc["generation"]) if doc else 1


async def ensure_control(
    db: AsyncDatabase[Doc], dedup_retention_s: int = DEDUP_RETENTION_S
) -> Generation:
    """The active generation, created (generation 1) on first start."""
    await db[CONTROL].update_one(
        {"_id": "active"}, {"$setOnInsert": {"generation": 1}}, upsert=True
    )
    generation = Generation(db, await active_generation(db))
    await generation.ensure(dedup_retention_s)
    return generation


# MongoDB is read in a snapshot (a batch's positions, event ids and states agree) and
# written to a majority (the Kafka offsets are committed only after the commit).
SNAPSHOT, MAJORITY = ReadConcern("snapshot"), WriteConcern("majority")


class ProjectionUnitOfWork(MongoUnitOfWork):
    """One batch's transaction on the read models of one generation, with its
    repositories (positions, applied events, states, aggregates) bound to its session.
    ``generation=None`` follows the control document (the live projector); a number pins
    one (a rebuild)."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        generation: int | None = None,
        metrics: WriteMetrics | None = None,
        max_generation_retries: int = 10,
    ) -> None:
        super().__init__(db.client, read_concern=SNAPSHOT, write_concern=MAJORITY)
        self._db = db
        self._pinned = generation
        self._max_generation_retries = max_generation_retries
        self._generation: Generation | None = None
        metrics = metrics or _NoMetrics()
        self.positions = MongoPositions(self, metrics)
        self.applied_events = MongoAppliedEvents(self, metrics)
        self.states = MongoStates(self, metrics)
        self.aggregates = MongoAggregates(self, metrics)

    async def generation(self) -> Generation:
        """The generation read and written: in :meth:`run`, the one its transaction
        found at the start of the attempt; outside, the pinned or active one now."""
        return self._generation or await self._resolve(None)

    async def _resolve(self, session: AsyncClientSession | None) -> Generation:
        return Generation(self._db, self._pinned or await active_generation(self._db, session))

    async def run(self, work: Callable[[Self], Awaitable[T]]) -> T:
        in_transaction = super().run

        async def in_generation(uow: Self) -> T:
            # Read in the transaction's snapshot: a swap committed before it is seen.
            self._generation = await self._resolve(uow.session)
            return await work(uow)

        async def attempt() -> T:
            try:
                return await in_transaction(in_generation)
            except (DuplicateKeyError, BulkWriteError) as exc:
                if is_duplicate_key(exc):
                    raise AggregateInsertedMeanwhile(str(exc)) from exc
                raise
            finally:
                self._generation = None

        async def transaction() -> T:
            # Another instance inserted an aggregate this batch's snapshot did not have:
            # run the batch again (its fresh snapshot increments that document).
            return await retry_on_conflict(
                attempt,
                conflict=AggregateInsertedMeanwhile,
                attempts=self._max_generation_retries,
                what="projection batch (aggregate inserted concurrently)",
            )

        # The generation was swapped during the batch (GenerationRetired): run it again.
        return await retry_on_conflict(
            transaction,
            conflict=GenerationRetired,
            attempts=self._max_generation_retries,
            what="projection batch (generation swapped)",
            exhausted=lambda: GenerationRetired("the active generation kept changing"),
        )


class _InGeneration:
    """A repository of the unit of work's generation, in its session."""

    def __init__(self, uow: ProjectionUnitOfWork, metrics: WriteMetrics) -> None:
        self._uow = uow
        self._metrics = metrics

    async def _find(self, collection: str, query: Doc, projection: Doc | None = None) -> list[Doc]:
        generation = await self._uow.generation()
        cursor = generation[collection].find(query, projection, session=self._uow.session)
        return [doc async for doc in cursor]

    async def _bulk(self, collection: str, ops: list[Any]) -> None:
        if not ops:
            return
        generation = await self._uow.generation()
        await generation[collection].bulk_write(ops, ordered=True, session=self._uow.session)
        self._metrics.written(collection, len(ops))


class MongoPositions(_InGeneration):
    async def get(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Position]:
        """In the transaction a sealed position means a rebuild swapped the generation out
        (:class:`GenerationRetired`); outside it the positions are only a hint."""
        docs = await self._find(
            "positions", {"_id": {"$in": [position_id(tp) for tp in partitions]}}
        )
        if self._uow.session is not None and any(doc.get("sealed") for doc in docs):
            number = (await self._uow.generation()).number
            raise GenerationRetired(f"generation {number} was swapped out")
        return {(doc["topic"], int(doc["partition"])): position_from_doc(doc) for doc in docs}

    async def advance(self, positions: Mapping[TopicPartition, Position]) -> None:
        await self._bulk(
            "positions",
            [
                UpdateOne(
                    {"_id": position_id(tp)},
                    {
                        # Set, not $max: a position may start again in a replaced log.
                        "$set": {"offset": position.offset, "ce_id": position.ce_id},
                        "$setOnInsert": {"topic": tp[0], "partition": tp[1], "sealed": False},
                    },
                    upsert=True,
                )
                for tp, position in sorted(positions.items())
            ],
        )


class MongoAppliedEvents(_InGeneration):
    async def known(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return {
            doc["_id"]
            for doc in await self._find("applied_events", {"_id": {"$in": list(ids)}}, {"_id": 1})
        }

    async def add(self, ids: Sequence[str], at: datetime) -> None:
        await self._bulk("applied_events", [InsertOne({"_id": i, "at": at}) for i in ids])


class MongoStates(_InGeneration):
    async def load(self, keys: StateKeys) -> LoadedStates:
        loaded = LoadedStates()
        learners = sorted(keys.learners)
        if learners:
            for doc in await self._find("enrolments", {"learner": {"$in": learners}}):
                state = enrolment_from_doc(doc)
                loaded.enrolments[state.enrolment_id] = state
            for doc in await self._find("participants", {"_id": {"$in": learners}}):
                p = participant_from_doc(doc)
                loaded.participants[p.learner] = p
        if keys.match_ids:
            for doc in await self._find("matches", {"_id": {"$in": sorted(keys.match_ids)}}):
                m = match_from_doc(doc)
                loaded.matches[m.match_id] = m
        return loaded

    async def save(self, outcome: BatchOutcome) -> None:
        states: list[tuple[str, Iterable[EnrolmentState | ParticipantState | MatchState]]] = [
            ("enrolments", outcome.enrolments.values()),
            ("participants", outcome.participants.values()),
            ("matches", outcome.matches.values()),
        ]
        for collection, changed in states:
            ops = [
                ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in map(state_to_doc, changed)
            ]
            await self._bulk(collection, ops)


class MongoAggregates(_InGeneration):
    async def add(self, outcome: BatchOutcome) -> None:
        """One bulk write per aggregate collection: a new document is inserted whole,
        an existing one gets ``$inc`` of the counters that changed, then the documents
        whose counts all fell to zero are deleted.

        Insert or increment, not one ``$inc`` upsert of every counter: the database
        server checks each update's paths against each other (quadratic in the ~40
        counters of a document) and its update path costs several inserts
        (bench/RESULTS.md). Which documents exist is read in the batch's snapshot; a
        document another instance inserts meanwhile makes the insert fail and the batch
        run again (``ProjectionUnitOfWork.run``)."""
        deltas: dict[AggregateName, dict[tuple[str, ...], Counts]] = {}
        for (name, key), counts in sorted(outcome.deltas.items()):
            deltas.setdefault(name, {})[key] = counts
        by_collection: dict[AggregateName, list[Any]] = {}
        for name, changed in deltas.items():
            ids = [aggregate_id(key) for key in changed]
            existing = {
                doc["_id"]
                for chunk in in_chunks(ids)
                for doc in await self._find(
                    AGGREGATE_COLLECTIONS[name], {"_id": {"$in": chunk}}, {"_id": 1}
                )
            }
            ops = by_collection.setdefault(name, [])
            for key, counts in changed.items():
                doc_id = aggregate_id(key)
                if doc_id not in existing:
                    ops.append(InsertOne(new_aggregate_document(name, key, counts)))
                elif inc := {f"counts.{f}": v for f, v in counts.items() if v}:
                    ops.append(UpdateOne({"_id": doc_id}, {"$inc": inc}))
        for name, key in sorted(outcome.decremented):
            # A document exists exactly when its counts are not all zero, however the log
            # was cut into batches: this keeps a rebuild identical to the live models.
            by_collection.setdefault(name, []).append(
                DeleteMany(
                    {
                        "_id": aggregate_id(key),
                        **{f"counts.{f}": 0 for f in AGGREGATES[name].fields},
                    }
                )
            )
        for name, ops in sorted(by_collection.items()):
            await self._bulk(AGGREGATE_COLLECTIONS[name], ops)


def new_aggregate_document(name: AggregateName, key: tuple[str, ...], counts: Counts) -> Doc:
    """An aggregate's first document: every counter, in canonical order, and the fields
    after ``_id`` in name order (the shape a ``$setOnInsert``/``$inc`` upsert gave)."""
    fields: Doc = {
        **dict(zip(AGGREGATES[name].dims, key, strict=True)),
        "counts": full_counts(name, counts),
    }
    return {"_id": aggregate_id(key), **dict(sorted(fields.items()))}


# ---------------------------------------------------------------------------------------
# Generations: rebuild support.


class Generations:
    def __init__(self, db: AsyncDatabase[Doc], dedup_retention_s: int = DEDUP_RETENTION_S) -> None:
        self._db = db
        self._dedup_retention_s = dedup_retention_s

    async def active(self) -> int:
        return await active_generation(self._db)

    async def existing(self) -> set[int]:
        numbers = set()
        for name in await self._db.list_collection_names():
            head, _, rest = name.partition("_")
            if head.startswith("g") and head[1:].isdigit() and rest in ALL_COLLECTIONS:
                numbers.add(int(head[1:]))
        return numbers

    async def fresh(self) -> Generation:
        """A new, empty generation numbered above every existing one."""
        await ensure_control(self._db, self._dedup_retention_s)
        number = max({await self.active(), *await self.existing()}) + 1
        generation = Generation(self._db, number)
        await generation.drop()
        await generation.ensure(self._dedup_retention_s)
        return generation

    async def positions(self, number: int) -> dict[TopicPartition, int]:
        g = Generation(self._db, number)
        return {
            (d["topic"], int(d["partition"])): int(d["offset"])
            async for d in g["positions"].find({})
        }

    async def swap(self, old: int, new: int, partitions: Iterable[TopicPartition]) -> bool:
        """Make ``new`` the active generation if it has applied at least everything
        ``old`` has. Seals every position of ``old`` in the same transaction, so a live
        batch on ``old`` that has not committed yet conflicts and is re-run on ``new``.
        Returns False (nothing changed) when ``new`` is behind: catch up and try again."""

        async def swap_generations(uow: MongoUnitOfWork) -> bool:
            s = uow.session
            if await active_generation(self._db, s) != old:
                raise RuntimeError(f"generation {old} is no longer active")
            g_old, g_new = Generation(self._db, old), Generation(self._db, new)
            old_pos = {d["_id"]: d async for d in g_old["positions"].find({}, session=s)}
            new_pos = {d["_id"]: d async for d in g_new["positions"].find({}, session=s)}
            for pid, doc in old_pos.items():
                if int(new_pos.get(pid, {}).get("offset", -1)) < int(doc["offset"]):
                    return False
            seal = [
                UpdateOne(
                    {"_id": position_id(tp)},
                    {
                        "$set": {"sealed": True},
                        "$setOnInsert": {"topic": tp[0], "partition": tp[1], "offset": -1},
                    },
                    upsert=True,
                )
                for tp in sorted(set(partitions))
            ]
            seal += [UpdateOne({"_id": pid}, {"$set": {"sealed": True}}) for pid in sorted(old_pos)]
            await g_old["positions"].bulk_write(seal, session=s)
            await self._db[CONTROL].update_one(
                {"_id": "active"}, {"$set": {"generation": new}}, session=s
            )
            return True

        uow = MongoUnitOfWork(self._db.client, read_concern=SNAPSHOT, write_concern=MAJORITY)
        return await uow.run(swap_generations)

    async def drop(self, number: int) -> None:
        await Generation(self._db, number).drop()


# ---------------------------------------------------------------------------------------
# Report queries.


class ReportReader(Protocol):
    async def sum_counts(
        self, name: AggregateName, filters: Filters, group_by: str | None
    ) -> dict[str, Counts]: ...

    async def wait_days(self, filters: Filters) -> list[float]: ...


def aggregate_match(name: AggregateName, filters: Filters) -> Doc:
    """The MongoDB filter selecting the aggregate documents a report covers. Filters on a
    dimension an aggregate does not have (e.g. programme for matches) do not apply."""
    dims = AGGREGATES[name].dims
    query: Doc = {"combined_authority": {"$in": list(filters.combined_authorities)}}
    if filters.local_authority:
        query["local_authority"] = filters.local_authority
    query.update({name: code for name, code in filters.selected().items() if name in dims})
    if "month" in dims and (filters.month_from or filters.month_to):
        month: Doc = {}
        if filters.month_from:
            month["$gte"] = filters.month_from
        if filters.month_to:
            month["$lte"] = filters.month_to
        query["month"] = month
    return query


class MongoReportReader:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db

    async def _generation(self) -> Generation:
        return Generation(self._db, await active_generation(self._db))

    async def sum_counts(
        self, name: AggregateName, filters: Filters, group_by: str | None
    ) -> dict[str, Counts]:
        """Counters summed per value of ``group_by`` (one group ``""`` when None)."""
        generation = await self._generation()
        fields = AGGREGATES[name].fields
        pipeline: list[Doc] = [
            {"$match": aggregate_match(name, filters)},
            {
                "$group": {
                    "_id": f"${group_by}" if group_by else None,
                    **{f: {"$sum": f"$counts.{f}"} for f in fields},
                }
            },
        ]
        cursor = await generation.aggregate(name).aggregate(pipeline)
        out: dict[str, Counts] = {}
        async for doc in cursor:
            key = "" if doc["_id"] is None else str(doc["_id"])
            out[key] = {f: int(doc.get(f, 0)) for f in fields}
        return out

    async def wait_days(self, filters: Filters) -> list[float]:
        generation = await self._generation()
        query: Doc = {
            "combined_authority": {"$in": list(filters.combined_authorities)},
            "wait_days": {"$ne": None},
        }
        if filters.local_authority:
            query["local_authority"] = filters.local_authority
        if filters.month_from or filters.month_to:
            month: Doc = {}
            if filters.month_from:
                month["$gte"] = filters.month_from
            if filters.month_to:
                month["$lte"] = filters.month_to
            query["confirmed_month"] = month
        cursor = generation["matches"].find(query, {"wait_days": 1, "_id": 0})
        return [float(d["wait_days"]) async for d in cursor]
