"""The command line refuses bad input before any traffic, with a clear message."""

from __future__ import annotations

import json

import pytest

from simulator.__main__ import main


@pytest.fixture(autouse=True)
def no_demo_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "COMMONGROUND_DEMO_PROVIDER_KEY",
        "COMMONGROUND_DEMO_COORDINATOR_KEY",
        "COMMONGROUND_SIMULATOR_PROVIDER_KEY",
        "COMMONGROUND_SIMULATOR_COORDINATOR_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learners", "0"], "--learners: must be at least 1"),
        (["--learners", "many"], "is not a whole number"),
        (["--rate", "-5"], "--rate: must be more than 0"),
        (["--rate", "0"], "--rate: must be more than 0"),
        (["--authority", "Narnia"], "unknown combined authority 'Narnia'; known: E47000001"),
        (["--as-of", "yesterday"], "is not a date"),
        (["--linger", "-1"], "must not be negative"),
        ([], "no provider key"),
    ],
)
def test_bad_input_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The URLs point nowhere: a usage error must come before any connection attempt.
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--enrolment-url", "http://192.0.2.1:9"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_dry_run_prints_the_population_and_sends_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "--dry-run",
        "--learners",
        "40",
        "--seed",
        "5",
        "--as-of",
        "2025-06-30",
        "--authority",
        "tees-valley",
        "--enrolment-url",
        "http://192.0.2.1:9",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["learners"] == 40
    assert set(summary["by_authority"]) == {"E47000006"}
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == summary
