"""Dead-letter tool: list dead letters, inspect one, re-publish selected ones.

    python -m ops.dlq list    --topic enrolment.events.v1
    python -m ops.dlq show    --topic enrolment.events.v1 2:17 [--body]
    python -m ops.dlq replay  --topic enrolment.events.v1 2:17 3:4 [--dry-run]
    python -m ops.dlq replay  --topic enrolment.events.v1 --all --error-contains ValidationError

A dead letter is addressed by its position in ``<topic>.dlq`` (``partition:offset``).
Replay re-publishes the original bytes, key and headers to the original topic (after
the fix has been deployed); the CloudEvent id is unchanged, so consumers that already
applied the record skip it and a replayed record is applied at most once in effect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic_settings import SettingsConfigDict

from shared.dead_letters import (
    DLQ_HEADERS,
    H_ERROR,
    H_ERROR_KIND,
    H_FAILED_AT,
    H_TOPIC,
    H_TRUNCATED,
)
from shared.kafka import aiokafka_security_kwargs
from shared.settings import ServiceSettings
from shared.topics import dead_letter_topic

H_REPLAYED_FROM = "dlq_replayed_from"


class OpsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="OPS_")
    service_name: ClassVar[str] = "ops"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def address(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return ""

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if k not in DLQ_HEADERS and k != H_REPLAYED_FROM]

    def summary(self) -> dict[str, str]:
        return {
            "address": self.address,
            "original": f"{self.header(H_TOPIC)}[{self.header('dlq_original_partition')}]"
            f"@{self.header('dlq_original_offset')}",
            "kind": self.header(H_ERROR_KIND),
            "failed_at": self.header(H_FAILED_AT),
            "ce_type": self.header("ce_type"),
            "ce_id": self.header("ce_id"),
            "error": self.header(H_ERROR),
            "truncated": self.header(H_TRUNCATED),
        }

    @property
    def truncated(self) -> bool:
        """A bounded dead letter (the record was too large): its bytes are not the
        original's, so it cannot be replayed (digests in dlq_*_sha256)."""
        return bool(self.header(H_TRUNCATED))


async def read_dead_letters(settings: OpsSettings, topic: str) -> list[DeadLetter]:
    """Everything currently in ``<topic>.dlq``, oldest first per partition."""
    dlq = dead_letter_topic(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **aiokafka_security_kwargs(settings.kafka_security()),
    )
    await consumer.start()
    try:
        partition_ids = consumer.partitions_for_topic(dlq)
        if not partition_ids:
            await consumer.topics()  # refreshes cluster metadata
            partition_ids = consumer.partitions_for_topic(dlq) or set()
        partitions = [TopicPartition(dlq, p) for p in sorted(partition_ids)]
        if not partitions:
            return []
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        letters: list[DeadLetter] = []
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            if not batch:
                # Nothing more arrives although end offsets say so (compaction etc.).
                positions = [await consumer.position(tp) for tp in remaining]
                if all(pos >= end[tp] for pos, tp in zip(positions, remaining, strict=True)):
                    break
                continue
            for tp, records in batch.items():
                for r in records:
                    if r.offset < end[tp]:
                        letters.append(
                            DeadLetter(
                                r.partition, r.offset, r.key, r.value or b"", tuple(r.headers)
                            )
                        )
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return sorted(letters, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


def select(
    letters: Sequence[DeadLetter],
    addresses: Sequence[str],
    *,
    take_all: bool,
    error_contains: str | None,
) -> list[DeadLetter]:
    by_address = {d.address: d for d in letters}
    unknown = [a for a in addresses if a not in by_address]
    if unknown:
        raise SystemExit(f"no dead letter at {', '.join(unknown)} (use `list` to see addresses)")
    chosen = [by_address[a] for a in addresses] if addresses else list(letters if take_all else [])
    if error_contains:
        chosen = [d for d in chosen if error_contains in d.header(H_ERROR)]
    return chosen


async def replay(
    settings: OpsSettings, topic: str, letters: Sequence[DeadLetter], *, dry_run: bool
) -> list[str]:
    """Re-publish ``letters`` to their original topic; returns what was (or would be) sent.
    Truncated (bounded) letters are skipped: their bytes are not the original's."""
    skipped = [
        f"{d.address} skipped: truncated ({d.header(H_TRUNCATED)})" for d in letters if d.truncated
    ]
    letters = [d for d in letters if not d.truncated]
    plan = [f"{d.address} -> {d.header(H_TOPIC) or topic} key={d.key!r}" for d in letters]
    plan += skipped
    if dry_run or not letters:
        return plan
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        **aiokafka_security_kwargs(settings.kafka_security()),
    )
    await producer.start()
    try:
        for d in letters:
            headers = [*d.original_headers(), (H_REPLAYED_FROM, d.address.encode())]
            await producer.send_and_wait(
                d.header(H_TOPIC) or topic, d.value, key=d.key, headers=headers
            )
    finally:
        await producer.stop()
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="commonground-dlq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "show", "replay"):
        p = sub.add_parser(name)
        p.add_argument("--topic", required=True, help="the original topic (not the .dlq)")
        if name == "show":
            p.add_argument("address", help="partition:offset in the .dlq topic")
            p.add_argument("--body", action="store_true", help="also print the record body")
        if name == "replay":
            p.add_argument("addresses", nargs="*", help="partition:offset in the .dlq topic")
            p.add_argument("--all", action="store_true", help="every dead letter of the topic")
            p.add_argument("--error-contains", help="only dead letters whose error has this text")
            p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    args = parser.parse_args(argv)
    settings = OpsSettings()
    letters = asyncio.run(read_dead_letters(settings, args.topic))
    out = sys.stdout
    if args.command == "list":
        for d in letters:
            out.write(json.dumps(d.summary()) + "\n")
        out.write(f"{len(letters)} dead letter(s) in {dead_letter_topic(args.topic)}\n")
        return 0
    if args.command == "show":
        letter = select(letters, [args.address], take_all=False, error_contains=None)[0]
        doc: dict[str, object] = {
            **letter.summary(),
            "key": letter.key.decode(errors="replace") if letter.key else None,
            "headers": {k: v.decode(errors="replace") for k, v in letter.headers},
        }
        if args.body:
            doc["body"] = letter.value.decode(errors="replace")
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    if not args.addresses and not args.all:
        parser.error("replay needs dead-letter addresses or --all")
    chosen = select(letters, args.addresses, take_all=args.all, error_contains=args.error_contains)
    plan = asyncio.run(replay(settings, args.topic, chosen, dry_run=args.dry_run))
    verb = "would replay" if args.dry_run else "replayed"
    for line in plan:
        out.write(f"{verb} {line}\n")
    out.write(f"{verb} {len(plan)} record(s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
