"""Knowing, cheaply and at once, whether a dependency is reachable.

HTTP intake must refuse work it cannot pass on (503 + Retry-After) rather than accept it
and then hold it indefinitely; asking the broker on every request would put a broker
round trip (or, while it is down, a timeout) in front of every answer. A
:class:`DependencyWatch` probes in the background and keeps the last answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

logger = logging.getLogger(__name__)


class DependencyWatch:
    """Probes ``probe()`` every ``interval_s`` (each probe bounded by ``timeout_s``);
    :attr:`available` is the last answer. Optimistic until the first probe answers."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[bool]],
        *,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.name = name
        self._probe = probe
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self.available = True

    async def check(self) -> bool:
        try:
            ok = bool(await asyncio.wait_for(self._probe(), self._timeout_s))
        except Exception:
            ok = False
        if ok != self.available:
            logger.log(
                logging.INFO if ok else logging.WARNING,
                "%s is %s",
                self.name,
                "reachable again" if ok else "unreachable",
            )
        self.available = ok
        return ok

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval_s)

    async def __aenter__(self) -> DependencyWatch:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
