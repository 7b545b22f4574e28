"""Supervision of the local stack's children: a child that exits unexpectedly is logged
(which component, how it ended, the end of its log) and restarted with capped
exponential backoff; after too many rapid failures in a row the stack gives up with a
clear message.

Runs on the stack's main thread: :meth:`Supervisor.check` is called once a tick and
never blocks longer than one restart (an embedded server's restart waits until it
answers, so that what depends on it, the contract topics, can be re-created first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from devstack.processes import ChildProcess, StackError, describe_exit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff ``initial_delay_s`` * ``multiplier``^(n-1), at most ``max_delay_s``, for
    the n-th failure in a row; give up after ``max_rapid_failures`` failures in a row. A
    run that lasted ``stable_after_s`` ends the row (the next failure counts as the
    first)."""

    initial_delay_s: float = 1.0
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    max_rapid_failures: int = 5
    stable_after_s: float = 60.0

    def delay(self, failures: int) -> float:
        return float(
            min(self.initial_delay_s * self.multiplier ** max(failures - 1, 0), self.max_delay_s)
        )


def _noop() -> None:
    return None


@dataclass
class Component:
    """One supervised child.

    ``restart`` starts it again (for an embedded server: and waits until it answers;
    raising :class:`StackError` counts as another failure); ``after_restart`` runs next
    (re-creating the contract topics on a fresh broker); ``ready`` (services) is polled
    after a restart until it is true, to log the recovery."""

    name: str
    process: Callable[[], ChildProcess | None]
    restart: Callable[[], None]
    after_restart: Callable[[], None] = _noop
    ready: Callable[[], bool] | None = None
    restarts: int = 0
    failures_in_a_row: int = 0
    started_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None
    recovering_since: float | None = None


class Supervisor:
    def __init__(
        self,
        components: Sequence[Component],
        policy: RestartPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.components = list(components)
        self.policy = policy or RestartPolicy()
        self._clock = clock
        now = clock()
        for component in self.components:
            component.started_at = now

    def add(self, component: Component) -> None:
        component.started_at = self._clock()
        self.components.append(component)

    def restarts(self) -> dict[str, int]:
        return {c.name: c.restarts for c in self.components}

    def summary(self) -> str:
        """``kafka 1, mongodb 0, enrolment 2, …`` (restarts per component)."""
        return ", ".join(f"{c.name} {c.restarts}" for c in self.components)

    def check(self) -> None:
        """One supervision tick. Raises :class:`StackError` when a component keeps
        failing (the caller stops the stack)."""
        for component in self.components:
            now = self._clock()
            if component.restart_at is not None:
                if now >= component.restart_at:
                    self._restart(component)
                continue
            child = component.process()
            if child is None or child.popen is None:
                continue
            if child.running:
                self._watch_recovery(component, now)
                continue
            code = child.exit_code()
            ran_s = now - component.started_at
            child.note(f"exited ({describe_exit(code)}) after {ran_s:.0f}s")
            logger.error(
                "supervisor: %s exited unexpectedly (%s) after %.0fs. Its log (%s) ends with:\n%s",
                component.name,
                describe_exit(code),
                ran_s,
                child.log_path,
                child.log_tail(),
            )
            self._failed(component, ran_s)

    def _failed(self, component: Component, ran_s: float) -> None:
        if ran_s >= self.policy.stable_after_s:
            component.failures_in_a_row = 0
        component.failures_in_a_row += 1
        component.recovering_since = None
        child = component.process()
        if component.failures_in_a_row > self.policy.max_rapid_failures:
            log = f" Its log: {child.log_path}" if child else ""
            raise StackError(
                f"{component.name} failed {component.failures_in_a_row} times in a row "
                f"(restarted {component.restarts} times); giving up.{log}"
            )
        delay = self.policy.delay(component.failures_in_a_row)
        component.restart_at = self._clock() + delay
        logger.warning(
            "supervisor: restarting %s in %.1fs (failure %d in a row, at most %d)",
            component.name,
            delay,
            component.failures_in_a_row,
            self.policy.max_rapid_failures,
        )

    def _restart(self, component: Component) -> None:
        component.restart_at = None
        component.restarts += 1
        began = self._clock()
        try:
            component.restart()
            component.after_restart()
        except StackError as exc:
            logger.error(
                "supervisor: restart #%d of %s failed: %s", component.restarts, component.name, exc
            )
            child = component.process()
            if child is not None and child.running:
                child.stop()
            self._failed(component, self._clock() - began)
            return
        component.started_at = self._clock()
        component.recovering_since = component.started_at if component.ready else None
        logger.warning(
            "supervisor: %s restarted (restart #%d); restarts so far: %s",
            component.name,
            component.restarts,
            self.summary(),
        )

    def _watch_recovery(self, component: Component, now: float) -> None:
        if component.recovering_since is None or component.ready is None:
            return
        try:
            ready = component.ready()
        except Exception:  # not answering yet
            ready = False
        if ready:
            logger.warning(
                "supervisor: %s is ready again %.1fs after restart #%d",
                component.name,
                now - component.recovering_since,
                component.restarts,
            )
            component.recovering_since = None
