"""Demo mode of the local stack: keys are made up when absent (and kept when given), and
the simulator is a child process of the stack, pointed at the stack's own services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from devstack.__main__ import Stack
from devstack.processes import ChildProcess
from devstack.settings import StackSettings
from simulator.__main__ import parse

DEMO_KEYS = tuple(f"COMMONGROUND_DEMO_{r}_KEY" for r in ("PROVIDER", "COORDINATOR", "ANALYST"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COMMONGROUND_ variable from outside; and the keys demo mode exports are
    removed again afterwards (monkeypatch restores what it has touched)."""
    for name in [*DEMO_KEYS, *(n for n in os.environ if n.startswith("COMMONGROUND_"))]:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_demo_keys_are_made_up_when_absent_kept_when_given_and_exported() -> None:
    settings = StackSettings(demo=True, demo_provider_key=SecretStr("my-own-provider-key-123"))
    filled = settings.with_demo_keys()
    assert filled.demo_provider_key is not None
    assert filled.demo_provider_key.get_secret_value() == "my-own-provider-key-123"
    for role in ("coordinator", "analyst"):
        key = getattr(filled, f"demo_{role}_key")
        assert key is not None and len(key.get_secret_value()) >= 16  # reporting's minimum
        assert os.environ[f"COMMONGROUND_DEMO_{role.upper()}_KEY"] == key.get_secret_value()
    assert os.environ["COMMONGROUND_DEMO_PROVIDER_KEY"] == "my-own-provider-key-123"
    # Exported keys are what the children (and any later settings) read.
    again = StackSettings(demo=True).with_demo_keys()
    assert again.demo_coordinator_key == filled.demo_coordinator_key


def test_demo_mode_is_also_switched_on_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMMONGROUND_DEMO", "true")
    assert StackSettings().demo is True


def test_the_simulator_runs_as_a_child_of_the_stack_with_valid_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[ChildProcess] = []
    monkeypatch.setattr(ChildProcess, "start", lambda self: started.append(self))
    settings = StackSettings(
        demo=True, data_dir=tmp_path, enrolment_port=18001, matching_port=18002, demo_seed=7
    ).with_demo_keys()
    stack = Stack(settings)
    stack.start_simulator()
    assert stack.simulator is not None and started == [stack.simulator]
    argv = list(stack.simulator.argv)
    assert argv[1:3] == ["-m", "simulator"]
    assert stack.demo_service_env("matching") == {"MATCHING_BATCH_WINDOW_S": "20.0"}
    assert stack.demo_service_env("reporting") == {}
    # The arguments the stack passes are accepted by the simulator's own parser, with
    # the keys the stack exported.
    config, options, dry_run = parse(argv[3:])
    assert not dry_run and options is not None
    assert config.seed == 7 and config.learners == settings.demo_learners
    assert options.rate == settings.demo_rate
    assert options.enrolment_url == "http://127.0.0.1:18001"
    assert options.matching_url == "http://127.0.0.1:18002"
    assert settings.demo_provider_key is not None
    assert [k.get_secret_value() for k in options.provider_keys] == [
        settings.demo_provider_key.get_secret_value()
    ]
