"""Child processes that cannot outlive their parent.

Each child runs in its own process group (so a terminal's Ctrl-C reaches only us and we
decide the shutdown order) and gets ``PR_SET_PDEATHSIG`` so that even a SIGKILLed parent
leaves no orphan behind. (The death signal follows the *thread* that forked the child:
children are started from the main thread, which lives as long as the stack.)

Everything a child writes (stdout and stderr) goes to its log file, and the stack adds a
line there at every start and every exit, so a child that vanishes leaves a trace.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
)

PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A problem the user can fix; the message names the fix."""


class ChildExited(StackError):
    """A child exited while we waited for it (a start worth retrying)."""


def describe_exit(code: int | None) -> str:
    """``exit code 3`` / ``killed by SIGKILL`` / ``still running``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def require_free_port(host: str, port: int, what: str, setting: str) -> None:
    if not port_is_free(host, port):
        raise StackError(
            f"port {port} on {host} is already in use, so {what} cannot start. "
            f"Stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) "
            f"or choose another port with {setting}=<port>."
        )


@dataclass
class ChildProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    def start(self) -> None:
        """Start (or start again: the previous run's process group is reaped first)."""
        if self.popen is not None:
            self.stop()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.starts += 1
        self.note(f"start #{self.starts}: {' '.join(self.argv)}")
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError as exc:
            raise StackError(
                f"cannot start {self.name}: {self.argv[0]} not found. "
                "Run `uv sync` (./commonground does it for you) to install it."
            ) from exc

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    @property
    def exited(self) -> bool:
        """Started and no longer running."""
        return self.popen is not None and self.popen.poll() is not None

    def note(self, line: str) -> None:
        """Append a stack line (``===== ...``) to the child's log."""
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with open(self.log_path, "a") as out:
                out.write(f"===== {stamp} commonground: {self.name} {line}\n")
        except OSError:
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the child's whole process group, then SIGKILL after ``timeout_s``."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        if self.popen is not None:
            # Reap anything left in the group (e.g. a grandchild).
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    child: ChildProcess | None = None,
    interval_s: float = 0.25,
    fix: str = "",
) -> None:
    """Poll ``check()`` until it returns true, retrying its errors (a server not
    answering yet, a server-selection timeout) with backoff from ``interval_s`` up to
    2 s, for ``timeout_s``; fail clearly on timeout, or at once (:class:`ChildExited`)
    if ``child`` exits meanwhile."""

    def attempt() -> bool:
        if child is not None and child.exited:
            code = child.exit_code()
            raise ChildExited(
                f"{what} exited ({describe_exit(code)}) before becoming ready. "
                f"Its log ({child.log_path}) ends with:\n{child.log_tail()}"
            )
        return bool(check())

    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_exponential(multiplier=interval_s, min=interval_s, max=max(interval_s, 2.0)),
        retry=retry_if_result(lambda ok: not ok)
        | retry_if_exception(
            # StackError: a child exited, or the supervisor gave up; never worth a retry.
            lambda exc: isinstance(exc, Exception) and not isinstance(exc, StackError)
        ),
    )
    try:
        retrying(attempt)
    except RetryError as exc:
        last_error = exc.last_attempt.exception() if exc.last_attempt.failed else None
        hint = f" Last error: {last_error!r}." if last_error else ""
        log = f" See its log: {child.log_path}" if child else ""
        raise StackError(
            f"{what} did not become ready within {timeout_s:.0f}s.{hint}{log}"
            + (f"\n{fix}" if fix else "")
        ) from None
