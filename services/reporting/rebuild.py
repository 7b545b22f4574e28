"""``python -m services.reporting.rebuild``: recompute every read model from the topics.

1. A fresh generation ``N+1`` of collections is created next to the live ``N``.
2. Both topics are read from the beginning (a plain consumer, no consumer group, so the
   live service's committed offsets are untouched) through the *same* projector the live
   service uses, into ``N+1``, up to the end offsets seen at the start.
3. Catch-up and swap: the rebuild reads how far the live projector has got in ``N``,
   consumes at least that far, then swaps in one transaction that checks ``N+1`` is not
   behind ``N`` on any partition, seals ``N``'s positions and makes ``N+1`` active. A
   live batch racing the swap conflicts on a sealed position, retries and is applied to
   ``N+1`` (or skipped there, if the rebuild already applied it).
4. After a short grace period generation ``N`` is dropped (``--keep-old`` keeps it).

Poison records are not dead-lettered again (the live projector did that); they are
counted and skipped exactly as live, so the rebuilt read models equal the live ones.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka.security import parse_security

from services.reporting.entrypoints.kafka import CONSUMED
from services.reporting.repository import (
    Generations,
    ProjectionUnitOfWork,
    ensure_control,
)
from services.reporting.settings import ReportingSettings
from services.reporting.use_cases.projector import Projector
from shared import topics
from shared.dead_letters import RecordLike, RetryPolicy
from shared.learner_keys import MongoLearnerKeys
from shared.mongo import make_mongo_client

logger = logging.getLogger(__name__)

SOURCE_TOPICS = (topics.ENROLMENT_EVENTS, topics.MATCHING_MATCHES)


class _CountingDeadLetters:
    """During a rebuild poison is only counted: the live service already dead-lettered it."""

    def __init__(self) -> None:
        self.count = 0

    async def send(self, record: RecordLike, error: BaseException, *, kind: str) -> None:
        self.count += 1
        logger.info(
            "rebuild skipped %s record %s[%d]@%d (%s)",
            kind,
            record.topic,
            record.partition,
            record.offset,
            type(error).__name__,
        )


@dataclass(frozen=True)
class RebuildResult:
    old_generation: int
    new_generation: int
    records: int
    applied: int
    poison: int


async def _consume_until(
    consumer: AIOKafkaConsumer,
    projector: Projector,
    targets: Mapping[TopicPartition, int],
    max_records: int,
    max_idle_polls: int = 40,
) -> tuple[int, int]:
    """Project records until every partition's position is past its target offset."""
    records = applied = idle = 0
    while True:
        pending = [
            tp for tp, last in targets.items() if last >= 0 and await consumer.position(tp) <= last
        ]
        if not pending:
            return records, applied
        batch = await consumer.getmany(*pending, timeout_ms=500, max_records=max_records)
        flat = list(chain.from_iterable(batch.values()))
        if not flat:
            idle += 1
            if idle >= max_idle_polls:
                raise RuntimeError(
                    f"no records arrive for {pending}: the log no longer holds offsets the "
                    "read models were built from (was the broker's storage reset?)"
                )
            continue
        idle = 0
        report = await projector.handle(flat)
        records += report.records
        applied += report.applied


async def rebuild(
    settings: ReportingSettings,
    *,
    keep_old: bool = False,
    max_records: int = 1000,
    max_swap_attempts: int = 50,
) -> RebuildResult:
    mongo = make_mongo_client(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-rebuild",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **_security_kwargs(settings),
    )
    try:
        db = mongo[settings.database_name]
        generations = Generations(db, settings.dedup_retention_s)
        await ensure_control(db, settings.dedup_retention_s)
        old = await generations.active()
        new = await generations.fresh()
        logger.info("rebuilding generation %d into %d", old, new.number)
        dead_letters = _CountingDeadLetters()
        projector = Projector(
            partial(ProjectionUnitOfWork, db, generation=new.number),
            CONSUMED,
            dead_letters,
            retry_policy=RetryPolicy(attempts=settings.projection_transaction_attempts),
            # The service's own key copies: erased learners stay erased in a rebuild.
            learner_keys=MongoLearnerKeys(db),
            key_ring=settings.key_ring(),
        )
        await consumer.start()
        partitions = await _partitions(consumer)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records, applied = await _consume_until(
            consumer, projector, {tp: end - 1 for tp, end in ends.items()}, max_records
        )
        all_tps = [(tp.topic, tp.partition) for tp in partitions]
        for _ in range(max_swap_attempts):
            live = await generations.positions(old)
            targets = {tp: live.get((tp.topic, tp.partition), -1) for tp in partitions}
            more_records, more_applied = await _consume_until(
                consumer, projector, targets, max_records
            )
            records, applied = records + more_records, applied + more_applied
            if await generations.swap(old, new.number, all_tps):
                break
        else:
            raise RuntimeError("the live projector kept moving ahead; rebuild not swapped")
        logger.info("generation %d is now active", new.number)
        if not keep_old:
            await asyncio.sleep(settings.rebuild_drop_grace_s)
            await generations.drop(old)
        return RebuildResult(old, new.number, records, applied, dead_letters.count)
    finally:
        await consumer.stop()
        await mongo.close()


async def _partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    out: list[TopicPartition] = []
    for topic in SOURCE_TOPICS:
        for _ in range(50):
            found = consumer.partitions_for_topic(topic)
            if found:
                out += [TopicPartition(topic, p) for p in sorted(found)]
                break
            await consumer.topics()  # refreshes metadata
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"topic {topic} not found on the broker")
    return out


def _security_kwargs(settings: ReportingSettings) -> dict[str, Any]:
    security = settings.kafka_security()
    return {} if security is None else dict(parse_security(security))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.reporting.rebuild",
        description="Recompute every reporting read model from the topics, then swap.",
    )
    parser.add_argument("--keep-old", action="store_true", help="keep the old generation")
    parser.add_argument("--max-records", type=int, default=1000, help="records per batch")
    args = parser.parse_args(argv)
    settings = ReportingSettings()
    from shared.telemetry import configure_logging

    configure_logging(settings)
    result = asyncio.run(rebuild(settings, keep_old=args.keep_old, max_records=args.max_records))
    sys.stdout.write(
        f"rebuilt generation {result.new_generation} (was {result.old_generation}): "
        f"{result.records} records, {result.applied} events applied, "
        f"{result.poison} poison skipped\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
