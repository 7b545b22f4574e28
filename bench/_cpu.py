"""CPU accounting for benchmarks: CPU seconds used by each process over a phase, read
from /proc (utime + stime of every thread), so a figure can be split into the platform's
side and the database server's (or broker's) side per item."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class CpuMeter:
    """``with meter.phase("name"):`` … then ``meter.used["name"]`` = {process: seconds}."""

    pids: Mapping[str, int]
    used: dict[str, dict[str, float]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def phase(self, name: str) -> _Phase:
        return _Phase(self, name)

    def per_item_us(self, name: str, items: int) -> dict[str, float]:
        return {k: v / items * 1e6 for k, v in self.used.get(name, {}).items()}


class _Phase:
    def __init__(self, meter: CpuMeter, name: str) -> None:
        self._meter = meter
        self._name = name
        self._start: dict[str, float] = {}

    def __enter__(self) -> _Phase:
        self._start = self._meter.snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._meter.snapshot()
        self._meter.used[self._name] = {k: end[k] - self._start[k] for k in end}


def cpu_table(meter: CpuMeter, items: Mapping[str, int], unit: str = "item") -> list[str]:
    """Markdown rows: CPU µs per item of each phase, per process."""
    names = list(meter.pids)
    lines = [
        f"| phase | {' | '.join(f'{n} CPU µs/{unit}' for n in names)} | total µs/{unit} |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for phase, n in items.items():
        if phase not in meter.used or n <= 0:
            continue
        per = meter.per_item_us(phase, n)
        cells = " | ".join(f"{per.get(k, 0.0):,.0f}" for k in names)
        lines.append(f"| {phase} | {cells} | {sum(per.values()):,.0f} |")
    return lines
