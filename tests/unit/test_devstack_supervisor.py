"""The local stack's supervisor: a child that exits is logged, restarted with capped
exponential backoff, and given up on (with a clear message) after too many rapid
failures. Real child processes; a fake clock drives the backoff."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from devstack.processes import ChildProcess, StackError, describe_exit
from devstack.supervisor import Component, RestartPolicy, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing_child(tmp_path: Path, code: int = 3) -> ChildProcess:
    return ChildProcess(
        name="flaky",
        argv=[sys.executable, "-c", f"print('about to fail'); raise SystemExit({code})"],
        log_path=tmp_path / "flaky.log",
    )


def test_backoff_doubles_and_is_capped() -> None:
    policy = RestartPolicy(initial_delay_s=1.0, multiplier=2.0, max_delay_s=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_exit_descriptions_name_the_signal() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit code 1"


def test_a_dead_child_is_restarted_then_given_up_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    child = failing_child(tmp_path)
    child.start()
    assert child.popen is not None
    child.popen.wait(30)
    clock = Clock()
    restarted: list[int] = []

    def restart() -> None:
        child.start()
        assert child.popen is not None
        child.popen.wait(30)
        restarted.append(child.starts)

    policy = RestartPolicy(initial_delay_s=1.0, max_delay_s=4.0, max_rapid_failures=3)
    supervisor = Supervisor(
        [Component("flaky", process=lambda: child, restart=restart)], policy, clock=clock
    )
    supervisor.check()  # notices the exit, schedules a restart in 1 s
    assert "flaky exited unexpectedly (exit code 3)" in caplog.text
    assert "about to fail" in caplog.text  # the tail of its log
    supervisor.check()
    assert restarted == []  # not before the backoff has passed
    with pytest.raises(StackError, match="flaky failed 4 times in a row"):
        for _ in range(10):
            clock.now += 10.0
            supervisor.check()  # restart (it fails again at once)
            supervisor.check()  # notices, schedules the next
    assert restarted == [2, 3, 4]
    assert supervisor.restarts() == {"flaky": 3}
    assert "restarting flaky in 2.0s" in caplog.text and "restarting flaky in 4.0s" in caplog.text
    log = (tmp_path / "flaky.log").read_text()
    assert log.count("commonground: flaky exited (exit code 3)") == 4
    child.stop()


def test_a_long_run_ends_the_row_of_failures(tmp_path: Path) -> None:
    child = failing_child(tmp_path)
    child.start()
    assert child.popen is not None
    child.popen.wait(30)
    clock = Clock()
    policy = RestartPolicy(max_rapid_failures=1, stable_after_s=60.0)
    supervisor = Supervisor(
        [Component("flaky", process=lambda: child, restart=child.start)], policy, clock=clock
    )
    clock.now += 120.0  # it ran two minutes before failing: a first failure, not a row
    supervisor.check()
    assert supervisor.components[0].failures_in_a_row == 1
    child.stop()
