"""MongoDB reads of the QAR aggregate (``g<N>_agg_qar``, issue 15; domain/qar.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from services.reporting.domain.dimensions import Filters
from services.reporting.domain.projection import AGGREGATES, Counts
from services.reporting.repository import Generation, active_generation, aggregate_match

Doc = dict[str, Any]


class QarReader(Protocol):
    async def qar_sums(
        self, filters: Filters, group_by: str, years: Sequence[str]
    ) -> dict[str, Counts]:
        """QAR counters summed per value of ``group_by``, for the hybrid end ``years``
        (all years when empty)."""
        ...


class MongoQarReader:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db

    async def qar_sums(
        self, filters: Filters, group_by: str, years: Sequence[str]
    ) -> dict[str, Counts]:
        generation = Generation(self._db, await active_generation(self._db))
        fields = AGGREGATES["qar"].fields
        match = aggregate_match("qar", filters)
        if years:
            match["year"] = {"$in": list(years)}
        pipeline: list[Doc] = [
            {"$match": match},
            {"$group": {"_id": f"${group_by}", **{f: {"$sum": f"$counts.{f}"} for f in fields}}},
        ]
        cursor = await generation.aggregate("qar").aggregate(pipeline)
        out: dict[str, Counts] = {}
        async for doc in cursor:
            out["" if doc["_id"] is None else str(doc["_id"])] = {
                f: int(doc.get(f, 0)) for f in fields
            }
        return out
