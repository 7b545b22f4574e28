"""Run every benchmark in bench/ and write bench/RESULTS.md.

Each benchmark is a script ``bench/<name>.py`` that measures a figure *and its baseline
in the same run* (machines here are noisy; only ratios are comparable across runs) and
prints a Markdown table with at least the columns figure | baseline | measured | ratio.
This runner executes them one after another and puts each one's table in its own
``## <name>`` section of RESULTS.md, replacing only the sections of the benchmarks it
ran: hand-written sections (profiles, CPU budgets, before/after analyses) and the
results of benchmarks not run this time are kept.

    uv run python bench/run.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
NOT_BENCHMARKS = {"run.py", "__init__.py"}


def benchmarks(only: list[str]) -> list[Path]:
    found = sorted(
        p
        for p in BENCH_DIR.glob("*.py")
        if p.name not in NOT_BENCHMARKS and not p.name.startswith("_")
    )
    return [p for p in found if not only or p.stem in only]


def split_sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """RESULTS.md as its preamble (before the first ``## `` heading) and its ``## ``
    sections by heading, in order."""
    preamble: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] = preamble
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        current.append(line)
    return preamble, sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=[], help="benchmark names (file stems)")
    args = parser.parse_args(argv)
    _, sections = split_sections(RESULTS.read_text() if RESULTS.exists() else "")
    preamble = [
        "# Benchmark results",
        "",
        f"Last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}). "
        "Every ratio compares against a baseline measured in the same run.",
        "",
    ]
    failed = []
    for path in benchmarks(args.only):
        started = time.monotonic()
        print(f"running {path.name}…", file=sys.stderr, flush=True)
        result = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, cwd=BENCH_DIR.parent
        )
        elapsed = time.monotonic() - started
        section = [f"## {path.stem}", ""]
        if result.returncode != 0:
            failed.append(path.stem)
            section.append(
                f"FAILED (exit {result.returncode}):\n\n```\n{result.stderr[-3000:]}\n```"
            )
        else:
            section.append(result.stdout.strip())
        section.append(f"\n_{elapsed:.0f} s, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC_\n")
        sections[path.stem] = section
    body = [line for lines in sections.values() for line in lines]
    RESULTS.write_text("\n".join(preamble + body).rstrip() + "\n")
    print(f"wrote {RESULTS.relative_to(BENCH_DIR.parent)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
