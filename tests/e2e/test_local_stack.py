"""The README's first command, end to end: `python -m devstack up` brings the embedded
broker, database and all three services up, an independent client's CloudEvent reaches
a consumer, and SIGTERM leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.processes import free_port
from shared.cloudevents import CloudEvent
from shared.contracts.matching import MatchDeclined
from shared.contracts.reference import CombinedAuthority
from tests.helpers import unique

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry includes ``pid`` (or who is in its sessions)."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    result = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split()[2] == "Z":
            continue  # zombie awaiting its parent's wait(); not running
        result.add(pid)
    return result


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except OSError:
        return 0


@pytest.fixture
def stack_ports() -> dict[str, int]:
    return {
        name: free_port() for name in ("kafka", "mongodb", "enrolment", "matching", "reporting")
    }


def stack_env(tmp_path: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMONGROUND_")}
    env["COMMONGROUND_DATA_DIR"] = str(tmp_path / "data")
    for name, port in ports.items():
        env[f"COMMONGROUND_{name.upper()}_PORT"] = str(port)
    env["COMMONGROUND_DEMO_PROVIDER_KEY"] = "cg_demo_provider_key_for_tests"
    return env


@pytest.fixture
def running_stack(tmp_path: Path, stack_ports: dict[str, int]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up"],
        cwd=REPO,
        env=stack_env(tmp_path, stack_ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_stack_starts_serves_and_stops_cleanly(
    running_stack: subprocess.Popen[str], stack_ports: dict[str, int], tmp_path: Path
) -> None:
    # The banner is the operator's "ready" signal: it comes after every service answers
    # /readyz (the stack's own readiness poll backs off up to 2 s, so a client polling
    # faster can see the services ready first).
    assert running_stack.stdout is not None
    output_lines: list[str] = []
    reader = threading.Thread(
        target=lambda: output_lines.extend(iter(running_stack.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "Common Ground is running:\n" not in output_lines:
        assert running_stack.poll() is None, "".join(output_lines)
        time.sleep(0.2)
    assert "Common Ground is running:\n" in output_lines, "".join(output_lines)
    urls = [
        f"http://127.0.0.1:{stack_ports[s]}/readyz" for s in ("enrolment", "matching", "reporting")
    ]
    assert all(http_status(u) == 200 for u in urls), "banner printed before the services were ready"
    children = descendants(running_stack.pid)
    assert len(children) >= 5  # broker, database, three services

    # An independent client (plain aiokafka here, kcat works the same) produces a CloudEvent.
    import asyncio

    from aiokafka import AIOKafkaProducer

    event = CloudEvent(
        data=MatchDeclined(
            match_id=unique("m"),
            volunteer_id=unique("v"),
            participant=unique("p"),
            combined_authority=CombinedAuthority.WEST_OF_ENGLAND,
            local_authority="E06000023",
            reason="schedule clash",
            declined_at=datetime.now(UTC),
        ),
        source="/tests/e2e",
    )

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{stack_ports['kafka']}")
        await producer.start()
        try:
            await producer.send_and_wait(
                "matching.matches.v1",
                event.body(),
                key=b"E06000023",
                headers=[(k, v.encode()) for k, v in event.headers().items()],
            )
        finally:
            await producer.stop()

    asyncio.run(produce())
    metrics_url = f"http://127.0.0.1:{stack_ports['reporting']}/metrics"
    deadline = time.monotonic() + 30
    seen = False
    while time.monotonic() < deadline and not seen:
        with urllib.request.urlopen(metrics_url, timeout=3) as response:
            text = response.read().decode()
        seen = any(
            line.startswith("faststream_received_messages_total{")
            and "matching.matches.v1" in line
            and float(line.rsplit(" ", 1)[1]) >= 1
            for line in text.splitlines()
        )
        time.sleep(0.3)
    assert seen, "reporting's metrics never showed the consumed event"

    running_stack.send_signal(signal.SIGTERM)
    running_stack.wait(timeout=60)
    reader.join(timeout=10)
    output = "".join(output_lines)
    assert running_stack.returncode == 0, output
    assert "stopped.\n" in output_lines, output
    assert alive(children) == set(), f"orphans left: {alive(children)}\n{output}"
    assert (tmp_path / "data" / "mongodb").is_dir(), "database files persist in the data folder"


def test_port_in_use_fails_fast_with_fix_and_starts_nothing(
    tmp_path: Path, stack_ports: dict[str, int]
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", stack_ports["matching"]))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "up"],
            cwd=REPO,
            env=stack_env(tmp_path, stack_ports),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {stack_ports['matching']}" in result.stderr
    assert "COMMONGROUND_MATCHING_PORT" in result.stderr
    # Nothing was started: the kafka and mongodb ports are still free.
    for name in ("kafka", "mongodb"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", stack_ports[name]))


def test_external_kafka_that_never_answers_fails_clearly(
    tmp_path: Path, stack_ports: dict[str, int]
) -> None:
    env = stack_env(tmp_path, stack_ports)
    env["COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    env["COMMONGROUND_READY_TIMEOUT_S"] = "5"
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "up"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1
    assert "Kafka" in result.stderr and "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    with socket.socket() as probe:  # the embedded database was stopped again
        probe.bind(("127.0.0.1", stack_ports["mongodb"]))


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def child_running(stack_pid: int, *argv_part: str) -> int | None:
    """The pid of the stack's live descendant whose command line has ``argv_part``."""
    for pid in sorted(alive(descendants(stack_pid))):
        line = cmdline(pid)
        if all(part in line for part in argv_part):
            return pid
    return None


def poll(probe: Callable[[], object], *, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s:.0f}s; stack output:\n{log.read_text()}")


def topics_on(bootstrap: str) -> set[str]:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def listing() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            return set(await admin.list_topics())
        finally:
            await admin.close()

    try:
        return asyncio.run(listing())
    except Exception:
        return set()


def test_stack_heals_when_a_service_or_the_broker_is_killed(
    tmp_path: Path, stack_ports: dict[str, int]
) -> None:
    from shared.topics import all_topics

    output = tmp_path / "stack.out"
    with open(output, "w") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up"],
            cwd=REPO,
            env=stack_env(tmp_path, stack_ports),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    ready = {
        s: f"http://127.0.0.1:{stack_ports[s]}/readyz"
        for s in ("enrolment", "matching", "reporting")
    }

    def all_ready() -> bool:
        assert stack.poll() is None, output.read_text()
        return all(http_status(url) == 200 for url in ready.values())

    try:
        poll(
            lambda: all_ready() and "Common Ground is running" in output.read_text(),
            timeout_s=180,
            what="the stack was not ready",
            log=output,
        )

        # kill -9 one service: the supervisor says so and starts it again.
        victim = child_running(stack.pid, "services.enrolment")
        assert victim is not None, output.read_text()
        os.kill(victim, signal.SIGKILL)
        poll(
            lambda: "enrolment restarted (restart #1)" in output.read_text(),
            timeout_s=60,
            what="enrolment was not restarted",
            log=output,
        )
        poll(all_ready, timeout_s=120, what="enrolment did not become ready again", log=output)
        again = child_running(stack.pid, "services.enrolment")
        assert again is not None and again != victim
        text = output.read_text()
        assert "enrolment exited unexpectedly (killed by SIGKILL)" in text, text

        # kill -9 the broker (it forgets every topic): it comes back with the contract
        # topics, and every service is ready again.
        broker = child_running(stack.pid, "broker", "--listener-url")
        assert broker is not None, output.read_text()
        os.kill(broker, signal.SIGKILL)
        poll(
            lambda: "kafka restarted (restart #1)" in output.read_text(),
            timeout_s=120,
            what="the broker was not restarted",
            log=output,
        )
        bootstrap = f"127.0.0.1:{stack_ports['kafka']}"
        missing = set(all_topics()) - topics_on(bootstrap)
        assert not missing, f"topics not re-created: {missing}\n{output.read_text()}"
        poll(all_ready, timeout_s=180, what="services did not become ready again", log=output)
        assert "kafka exited unexpectedly (killed by SIGKILL)" in output.read_text()
        kafka_log = (tmp_path / "data" / "logs" / "kafka.log").read_text()
        assert "kafka exited (killed by SIGKILL)" in kafka_log  # a trace in its own log

        # Ctrl-C / SIGTERM still stops everything, restarted children included.
        children = descendants(stack.pid)
        stack.send_signal(signal.SIGTERM)
        stack.wait(90)
        text = output.read_text()
        assert stack.returncode == 0, text
        assert "restarts during this run: kafka 1, mongodb 0, enrolment 1" in text, text
        assert alive(children) == set(), f"orphans left: {alive(children)}\n{text}"
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait(10)
