"""Each reliability test's figures (expected, delivered, lost, duplicated per service),
logged and appended to artifacts/reliability.jsonl.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.config import (
    SEED,
    log,
)

FIGURES_FILE = Path(__file__).resolve().parents[2] / "artifacts" / "reliability.jsonl"


def record_figures(test: str, verdict: Any, **extra: Any) -> None:
    """Log a test's figures and append them to artifacts/reliability.jsonl."""
    figures = {
        name: {
            "expected": f.expected,
            "delivered": f.delivered,
            "lost": f.lost,
            "duplicated": f.duplicated,
            **f.notes,
        }
        for name, f in verdict.figures.items()
    }
    entry = {
        "test": test,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": SEED,
        **extra,
        "figures": figures,
        "report_cells": verdict.comparison.cells,
        "report_missing": verdict.comparison.missing,
        "report_extra": verdict.comparison.extra,
        "dead_letters": verdict.dead_letters,
    }
    log("FIGURES %s", json.dumps(entry))
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps(entry) + "\n")
