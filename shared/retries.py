"""Retrying, one way, on tenacity:

- :func:`retrying`: a transient failure (the database or broker not answering for a
  moment) is retried with capped exponential backoff, and the last error re-raised once
  the attempts are used up;
- :func:`retry_on_conflict`: an optimistic read-decide-write whose write lost a race to
  a concurrent change (a version check, a unique key) is run again at once, from the
  read, a bounded number of times.

What a consumer does once retries are used up (wait out an outage, or dead-letter the
records that keep failing) is :func:`shared.consuming.consume_policy`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

Errors = type[BaseException] | tuple[type[BaseException], ...]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,  # includes AutoReconnect / NetworkTimeout / ServerSelectionTimeoutError
    AutoReconnect,
    NetworkTimeout,
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    TimeoutError,
    ConnectionError,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_delay_s: float = 0.2
    max_delay_s: float = 5.0
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        """The waits between the attempts (one fewer than the attempts)."""
        out, delay = [], self.initial_delay_s
        for _ in range(self.attempts - 1):
            out.append(min(delay, self.max_delay_s))
            delay *= self.multiplier
        return out


def _log_transient(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.info("transient %s, retrying in %.2fs", type(error).__name__, delay)


async def retrying(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> T:
    """Run ``operation``, retrying transient errors with capped exponential backoff
    (``policy.delays()``). The last transient error is re-raised once the attempts are
    used up; any other error at once."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(transient),
        stop=stop_after_attempt(max(policy.attempts, 1)),
        wait=wait_exponential(
            multiplier=policy.initial_delay_s,
            exp_base=policy.multiplier,
            max=policy.max_delay_s,
        ),
        before_sleep=_log_transient,
        reraise=True,
    ):
        with attempt:
            return await operation()
    raise AssertionError("unreachable")  # tenacity returns or raises


async def retry_on_conflict(
    operation: Callable[[], Awaitable[T]],
    *,
    conflict: Errors,
    attempts: int,
    what: str,
    exhausted: Callable[[], BaseException] | None = None,
) -> T:
    """Run ``operation`` (read, decide, write) and, while its write raises ``conflict``
    (someone changed the data between the read and the write), run it again at once,
    ``attempts`` times at most. Then raise ``exhausted()`` (by default a
    ``RuntimeError``: "``what`` kept colliding with concurrent changes"), chained to the
    last conflict."""

    def log_conflict(state: RetryCallState) -> None:
        logger.info("%s: concurrent change, retrying (attempt %d)", what, state.attempt_number)

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(conflict),
            stop=stop_after_attempt(max(attempts, 1)),
            before_sleep=log_conflict,
        ):
            with attempt:
                return await operation()
    except RetryError as exc:
        error = (
            exhausted()
            if exhausted
            else RuntimeError(f"{what} kept colliding with concurrent changes")
        )
        raise error from exc.last_attempt.exception()
    raise AssertionError("unreachable")  # tenacity returns or raises
