"""Where the test suite's broker and database come from.

COMMONGROUND_TEST_INFRA selects:
  embedded (default)  start Tansu + SecantusDB on free loopback ports for the session
  containers          testcontainers: real Apache Kafka and MongoDB images (needs Docker)
  external            COMMONGROUND_TEST_KAFKA_BOOTSTRAP_SERVERS / COMMONGROUND_TEST_MONGODB_URL
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.kafka import ensure_topics
from shared.topics import all_topics


@dataclass(frozen=True)
class Infra:
    kind: str
    kafka_bootstrap_servers: str
    mongodb_url: str


@contextmanager
def embedded_infra() -> Iterator[Infra]:
    from devstack.embedded import EmbeddedKafka, EmbeddedMongo
    from devstack.processes import free_port

    log_dir = Path(tempfile.mkdtemp(prefix="cg-test-logs-"))
    kafka = EmbeddedKafka(free_port(), log_dir)
    mongo = EmbeddedMongo(free_port(), None, log_dir)
    try:
        kafka.start()
        mongo.start()
        yield Infra("embedded", kafka.bootstrap_servers, mongo.url)
    finally:
        kafka.stop()
        mongo.stop()


@contextmanager
def container_infra() -> Iterator[Infra]:
    try:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError(
            "COMMONGROUND_TEST_INFRA=containers needs the 'containers' extra: "
            "uv sync --extra containers"
        ) from exc
    with (
        KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka,
        MongoDbContainer("mongo:7.0") as mongo,
    ):
        yield Infra("containers", kafka.get_bootstrap_server(), mongo.get_connection_url())


@contextmanager
def external_infra() -> Iterator[Infra]:
    try:
        yield Infra(
            "external",
            os.environ["COMMONGROUND_TEST_KAFKA_BOOTSTRAP_SERVERS"],
            os.environ["COMMONGROUND_TEST_MONGODB_URL"],
        )
    except KeyError as exc:
        raise RuntimeError(
            f"COMMONGROUND_TEST_INFRA=external needs {exc.args[0]} to be set"
        ) from exc


TEST_PARTITIONS = 4


@contextmanager
def own_broker(infra: Infra) -> Iterator[Infra]:
    """``infra`` with a broker of its own: on the embedded default a fresh Tansu, so a
    consumer that reads its topics from the beginning reads only what its own tests
    produced, not everything the session produced before (which made figure checks wrong
    and catch-up slow). The database stays shared: tests name their databases uniquely.
    With containers or an external cluster the one broker is shared."""
    if infra.kind != "embedded":
        yield infra
        return
    from devstack.embedded import EmbeddedKafka
    from devstack.processes import free_port

    kafka = EmbeddedKafka(free_port(), Path(tempfile.mkdtemp(prefix="cg-test-broker-")))
    try:
        kafka.start()
        asyncio.run(
            ensure_topics(kafka.bootstrap_servers, all_topics(), partitions=TEST_PARTITIONS)
        )
        yield Infra(infra.kind, kafka.bootstrap_servers, infra.mongodb_url)
    finally:
        kafka.stop()


@contextmanager
def provide_infra(partitions: int = TEST_PARTITIONS) -> Iterator[Infra]:
    kind = os.environ.get("COMMONGROUND_TEST_INFRA", "embedded")
    factory = {
        "embedded": embedded_infra,
        "containers": container_infra,
        "external": external_infra,
    }
    if kind not in factory:
        raise RuntimeError(
            f"COMMONGROUND_TEST_INFRA={kind!r}: use embedded, containers or external"
        )
    with factory[kind]() as infra:
        asyncio.run(
            ensure_topics(infra.kafka_bootstrap_servers, all_topics(), partitions=partitions)
        )
        yield infra
