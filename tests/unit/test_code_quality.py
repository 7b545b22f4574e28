"""The tree stays as the README promises: ruff clean and ruff formatted (mypy strict is
`uv run mypy`; cold it costs minutes of the suite's 20 on 2 cores, so it is not here yet).

Run inside the suite so that a change which breaks them fails the one test command CI
runs, not only a developer's optional pre-commit habit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", ".")],
    ids=["ruff check", "ruff format"],
)
def test_ruff(command: tuple[str, ...]) -> None:
    result = run(*command)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
