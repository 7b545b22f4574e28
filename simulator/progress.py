"""A small progress bar on stderr (no dependency), or periodic log lines when stderr is
not a terminal."""

from __future__ import annotations

import logging
import time
from typing import TextIO

logger = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool,
        width: int = 28,
        log_every_s: float = 10.0,
    ) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = enabled
        self.width = width
        self.log_every_s = log_every_s
        self.done = 0
        self.decisions = 0
        self.problems = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_log = self.started

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._maybe_show()

    def decided(self, n: int = 1) -> None:
        self.decisions += n
        self._maybe_show()

    def problem(self, n: int = 1) -> None:
        self.problems += n

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        fraction = min(self.done / self.total, 1.0)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"[{bar}] {fraction:4.0%} {self.done}/{self.total} ops  {rate:7.1f} ops/s  "
            f"elapsed {_duration(elapsed)}  eta {_duration(eta)}  "
            f"decisions {self.decisions}  problems {self.problems}"
        )

    def _maybe_show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled:
            if force or now - self._last_draw >= 0.2:
                self._last_draw = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
        elif force or now - self._last_log >= self.log_every_s:
            self._last_log = now
            logger.info("%s", self.line())

    def close(self) -> None:
        self._maybe_show(force=True)
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
