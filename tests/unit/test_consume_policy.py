"""One way to retry and one consume policy (shared.retries, shared.consuming), without
I/O: transient errors are retried with the policy's backoff, optimistic writes re-run
on a conflict, and a batch that keeps failing is told apart into an outage (rewind) and
records that keep failing (one by one, only those dead-lettered)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from pymongo.errors import AutoReconnect

from shared.consuming import DependencyUnavailable, RetriesExhausted, consume_policy
from shared.retries import RetryPolicy, retry_on_conflict, retrying

NO_WAIT = RetryPolicy(attempts=3, initial_delay_s=0.0)


def flaky(failures: int, error: BaseException) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    calls: list[int] = []

    async def operation() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= failures:
            raise error
        return "done"

    return operation, calls


async def test_transient_errors_are_retried_then_the_last_is_raised() -> None:
    operation, calls = flaky(2, AutoReconnect("blip"))
    assert await retrying(operation, NO_WAIT) == "done"
    assert calls == [1, 2, 3]

    operation, calls = flaky(5, AutoReconnect("down"))
    with pytest.raises(AutoReconnect, match="down"):
        await retrying(operation, NO_WAIT)
    assert calls == [1, 2, 3]


async def test_other_errors_are_not_retried() -> None:
    operation, calls = flaky(5, ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        await retrying(operation, NO_WAIT)
    assert calls == [1]


async def test_backoff_follows_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("asyncio.sleep", sleep)
    policy = RetryPolicy(attempts=6, initial_delay_s=0.2, max_delay_s=1.0, multiplier=2.0)
    operation, _ = flaky(10, TimeoutError())
    with pytest.raises(TimeoutError):
        await retrying(operation, policy)
    assert slept == pytest.approx(policy.delays()) == [0.2, 0.4, 0.8, 1.0, 1.0]


class Clash(Exception):
    pass


async def test_a_conflicting_write_is_run_again_from_the_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    operation, calls = flaky(2, Clash())
    with caplog.at_level(logging.INFO, logger="shared.retries"):
        assert await retry_on_conflict(operation, conflict=Clash, attempts=3, what="w") == "done"
    assert calls == [1, 2, 3]
    assert "w: concurrent change, retrying (attempt 1)" in caplog.text

    operation, calls = flaky(9, Clash())
    with pytest.raises(RuntimeError, match="w kept colliding with concurrent changes") as raised:
        await retry_on_conflict(operation, conflict=Clash, attempts=3, what="w")
    assert isinstance(raised.value.__cause__, Clash)
    assert calls == [1, 2, 3]

    operation, _ = flaky(9, Clash())
    with pytest.raises(LookupError, match="custom"):
        await retry_on_conflict(
            operation, conflict=Clash, attempts=2, what="w", exhausted=lambda: LookupError("custom")
        )

    operation, calls = flaky(9, ValueError("not a conflict"))
    with pytest.raises(ValueError):
        await retry_on_conflict(operation, conflict=Clash, attempts=3, what="w")
    assert calls == [1]


async def _up() -> bool:
    return True


async def _down() -> bool:
    raise AutoReconnect("connection refused")


class Batch:
    """A handler of numbered records; records in ``bad`` fail with ``error`` alone and
    make any batch holding them fail too."""

    def __init__(self, bad: set[int], error: BaseException) -> None:
        self.bad, self.error = bad, error
        self.handled: list[int] = []
        self.failed: list[tuple[int, str]] = []

    async def all(self, records: list[int]) -> str:
        if self.bad & set(records):
            raise self.error
        self.handled += records
        return "batch"

    async def one(self, record: int) -> None:
        await self.all([record])

    async def note(self, record: int, error: BaseException) -> None:
        self.failed.append((record, type(error).__name__))


async def test_a_batch_that_succeeds_is_handled_whole() -> None:
    b = Batch(set(), AutoReconnect())
    records = [1, 2, 3]
    result = await consume_policy(
        records, lambda: b.all(records), b.one, healthy=_up, failed=b.note, what="t"
    )
    assert result == "batch"
    assert b.handled == [1, 2, 3] and b.failed == []


async def test_transient_failures_wait_out_an_outage_or_isolate_the_record() -> None:
    records = [1, 2, 3]
    b = Batch({2}, AutoReconnect("timed out"))
    with pytest.raises(DependencyUnavailable):
        await consume_policy(
            records, lambda: b.all(records), b.one, healthy=_down, failed=b.note, what="t"
        )
    assert b.handled == [] and b.failed == []

    result = await consume_policy(
        records, lambda: b.all(records), b.one, healthy=_up, failed=b.note, what="t"
    )
    assert result is None
    assert b.handled == [1, 3]
    assert b.failed == [(2, "RetriesExhausted")]

    # Without a probe a transient failure is always an outage.
    with pytest.raises(AutoReconnect):
        await consume_policy(
            records, lambda: b.all(records), b.one, healthy=None, failed=b.note, what="t"
        )


async def test_one_record_per_message_goes_to_failed_without_a_second_try() -> None:
    b = Batch({7}, AutoReconnect("timed out"))
    result = await consume_policy(
        [7], lambda: b.all([7]), None, healthy=_up, failed=b.note, what="t"
    )
    assert result is None
    assert b.failed == [(7, "RetriesExhausted")]


async def test_other_errors_propagate_unless_they_are_poison() -> None:
    records = [1, 2, 3]
    b = Batch({3}, KeyError("bug"))
    with pytest.raises(KeyError):  # rewound: the records come again
        await consume_policy(
            records, lambda: b.all(records), b.one, healthy=_up, failed=b.note, what="t"
        )
    assert b.handled == []

    await consume_policy(
        records,
        lambda: b.all(records),
        b.one,
        healthy=_up,
        failed=b.note,
        what="t",
        poison=lambda exc: RetriesExhausted(f"poison: {exc}"),
    )
    assert b.handled == [1, 2]
    assert b.failed == [(3, "RetriesExhausted")]
