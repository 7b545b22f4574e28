"""MongoDB reads behind the integration reports (issue 16), on the active generation of
read models (``repository.Generation``): aggregates summed by several dimensions at once,
and the exact per-record durations the medians need (never bucketed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.projection import (
    AGGREGATES,
    NOT_STATED,
    AggregateName,
    Counts,
)
from services.reporting.repository import Generation, active_generation, aggregate_match

Doc = dict[str, Any]


class IntegrationReader(Protocol):
    async def sum_grouped(
        self, name: AggregateName, filters: Filters, dims: Sequence[str]
    ) -> dict[tuple[str, ...], Counts]:
        """Counters summed per combination of values of ``dims``."""
        ...

    async def esol_progress_days(self, filters: Filters) -> list[tuple[str, str, float]]:
        """(local authority, start month, days from start to first progression) of every
        ESOL enrolment in scope that progressed."""
        ...

    async def first_waits(self, filters: Filters, by: str) -> dict[str, list[float]]:
        """Days to a first confirmed match of every matched participant in scope (by the
        month they opted in), per value of ``by``."""
        ...


def _months(filters: Filters) -> Doc | None:
    if not (filters.month_from or filters.month_to):
        return None
    month: Doc = {}
    if filters.month_from:
        month["$gte"] = filters.month_from
    if filters.month_to:
        month["$lte"] = filters.month_to
    return month


def _scope(filters: Filters, month_field: str) -> Doc:
    query: Doc = {"combined_authority": {"$in": list(filters.combined_authorities)}}
    if filters.local_authority:
        query["local_authority"] = filters.local_authority
    months = _months(filters)
    if months is not None:
        query[month_field] = months
    return query


class MongoIntegrationReader:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db

    async def _generation(self) -> Generation:
        return Generation(self._db, await active_generation(self._db))

    async def sum_grouped(
        self, name: AggregateName, filters: Filters, dims: Sequence[str]
    ) -> dict[tuple[str, ...], Counts]:
        generation = await self._generation()
        fields = AGGREGATES[name].fields
        pipeline: list[Doc] = [
            {"$match": aggregate_match(name, filters)},
            {
                "$group": {
                    "_id": {d: f"${d}" for d in dims},
                    **{f: {"$sum": f"$counts.{f}"} for f in fields},
                }
            },
        ]
        cursor = await generation.aggregate(name).aggregate(pipeline)
        out: dict[tuple[str, ...], Counts] = {}
        async for doc in cursor:
            key = tuple(str(doc["_id"].get(d)) for d in dims)
            out[key] = {f: int(doc.get(f, 0)) for f in fields}
        return out

    async def esol_progress_days(self, filters: Filters) -> list[tuple[str, str, float]]:
        generation = await self._generation()
        query = {
            **_scope(filters, "start_month"),
            "programme": "esol",
            "accepted": True,
            "progressed_on": {"$ne": None},
        }
        projection = {"local_authority": 1, "start_month": 1, "start_date": 1, "progressed_on": 1}
        out = []
        async for d in generation["enrolments"].find(query, projection):
            if not d.get("start_date"):
                continue
            days = (
                date.fromisoformat(d["progressed_on"]) - date.fromisoformat(d["start_date"])
            ).days
            out.append((d["local_authority"], d["start_month"], float(max(0, days))))
        return out

    async def first_waits(self, filters: Filters, by: str) -> dict[str, list[float]]:
        generation = await self._generation()
        query = {
            **_scope(filters, "opted_in_month"),
            "opted_in": True,
            "first_wait_days": {"$ne": None},
        }
        out: dict[str, list[float]] = {}
        async for d in generation["participants"].find(query, {by: 1, "first_wait_days": 1}):
            out.setdefault(d.get(by) or NOT_STATED, []).append(float(d["first_wait_days"]))
        return out
