"""The services as real processes (``python -m services.<name>``) that can be SIGKILLed and
SIGTERMed, and waiting on a condition while watching that they stay alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import (
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from devstack.processes import ChildProcess, free_port
from tests.reliability.config import (
    ENV_PREFIX,
    FAST,
)


@dataclass
class ServiceProcess:
    """``python -m services.<service>`` with its own database, group and HTTP port."""

    service: str
    bootstrap: str
    mongo_url: str
    database: str
    group: str
    log_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: ChildProcess | None = None
    starts: int = 0

    @property
    def prefix(self) -> str:
        return ENV_PREFIX[self.service]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.service}-{self.group}.log"

    def env(self) -> dict[str, str]:
        p = self.prefix
        return {
            "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "COMMONGROUND_MONGODB_URL": self.mongo_url,
            f"{p}_MONGODB_DATABASE": self.database,
            f"{p}_CONSUMER_GROUP": self.group,
            f"{p}_HTTP_PORT": str(self.port),
            f"{p}_HTTP_HOST": "127.0.0.1",
            "COMMONGROUND_LOG_JSON": "false",
            "COMMONGROUND_CONSUMER_LAG_INTERVAL_S": "3600",
            "COMMONGROUND_OTEL_ENABLED": "false",
            **FAST.get(self.service, {}),
            **self.extra_env,
        }

    def start(self) -> None:
        assert self.process is None or not self.process.running, "already running"
        self.starts += 1
        with open(self.log_path, "a") as out:
            out.write(f"\n===== start #{self.starts} at {datetime.now(UTC).isoformat()}\n")
        self.process = ChildProcess(
            name=f"{self.service} ({self.group})",
            argv=[sys.executable, "-m", f"services.{self.service}"],
            log_path=self.log_path,
            env=self.env(),
            cwd=Path(__file__).resolve().parents[2],
        )
        self.process.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.popen is not None
        return self.process.popen.pid

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=3.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise AssertionError(
                        f"{self.service} exited ({self.exit_code()}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.service} not ready after {timeout_s}s:\n{self.log_tail()}")

    async def ready(self) -> bool:
        async with httpx.AsyncClient(timeout=3.0) as client:
            try:
                return (await client.get(f"{self.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

    def kill(self) -> None:
        """kill -9: no shutdown code runs at all."""
        assert self.process is not None and self.process.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.popen.wait(10)
        self.process.stop()  # reaps the group, closes the log

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (what an orchestrator sends) and wait; returns the exit code."""
        assert self.process is not None and self.process.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.process.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        self.process.stop()
        return code

    def exit_code(self) -> int | None:
        return self.process.exit_code() if self.process else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.5,
    alive: Sequence[ServiceProcess] = (),
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        for svc in alive:
            if not svc.running:
                raise AssertionError(f"{svc.service} died:\n{svc.log_tail()}")
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    tails = "\n".join(f"--- {s.service}:\n{s.log_tail(25)}" for s in alive)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last={last!r}\n{tails}")
