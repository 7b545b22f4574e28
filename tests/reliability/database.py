"""The reliability tests' own database server: SecantusDB, like the session's, but with a
short transaction lifetime and a storage path so it can be stopped and started.

A process killed with SIGKILL in the middle of a MongoDB transaction leaves that
transaction open on the server, holding its document locks, until the server reaps it
(``transactionLifetimeLimitSeconds``, 60 s by default on MongoDB and SecantusDB). Its
replacement conflicts on those documents and retries (``with_transaction``) until then:
nothing is lost or doubled, but recovery takes up to a minute. Production may lower the
limit (``mongod --setParameter transactionLifetimeLimitSeconds=…``); these tests run with
a few seconds so that many crash trials fit in the suite.

    python -m tests.reliability.database --port 27018 --storage-path DIR --transaction-lifetime 5
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from devstack.embedded import mongo_answers
from devstack.processes import ChildProcess, free_port, wait_until


@dataclass
class Database:
    """A SecantusDB server process on a free port, with data kept across stop/start."""

    log_dir: Path
    transaction_lifetime_s: float = 5.0
    port: int = field(default_factory=free_port)
    storage_path: Path | None = None
    process: ChildProcess | None = None

    def __post_init__(self) -> None:
        if self.storage_path is None:
            self.storage_path = Path(tempfile.mkdtemp(prefix="cg-reliability-db-"))

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout_s: float = 60.0) -> None:
        self.process = ChildProcess(
            name="mongodb (secantus, reliability)",
            argv=[
                sys.executable,
                "-m",
                "tests.reliability.database",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.storage_path),
                "--transaction-lifetime",
                str(self.transaction_lifetime_s),
            ],
            log_path=self.log_dir / "database.log",
            cwd=Path(__file__).resolve().parents[2],
        )
        self.process.start()
        wait_until(
            lambda: mongo_answers(self.url),
            timeout_s=timeout_s,
            what=f"the database on port {self.port}",
            child=self.process,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def main(argv: list[str] | None = None) -> int:
    from secantus.server import SecantusDBServer

    parser = argparse.ArgumentParser(prog="tests.reliability.database")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--transaction-lifetime", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    server = SecantusDBServer(
        host="127.0.0.1",
        port=args.port,
        storage_path=args.storage_path,
        enable_test_commands=False,
        transaction_lifetime_seconds=args.transaction_lifetime,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
