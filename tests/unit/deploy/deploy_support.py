"""Shared pieces of the deployment-file tests: paths, the metrics catalogue, and a small
PromQL reader that finds which metrics and labels an expression uses. (A module of its
own name, not conftest, so ``import`` is never ambiguous with other test folders.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"

PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\w)(\s*\()?")


@dataclass
class PromQLRefs:
    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)


def promql_refs(expr: str) -> PromQLRefs:
    """Metric names and label names that a PromQL expression refers to (a reader good
    enough for our own rules and dashboards, not a full parser; promtool checks syntax)."""
    refs = PromQLRefs()
    text = _STRING.sub('""', expr)
    for body in _MATCHERS.findall(text):
        for matcher in body.split(","):
            name = re.split(r"=~|!~|!=|=", matcher, maxsplit=1)[0].strip()
            if name:
                refs.labels.add(name)
    text = _MATCHERS.sub(" ", text)
    for _, names in _GROUPING.findall(text):
        refs.labels.update(n.strip() for n in names.split(",") if n.strip())
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for name, call in _IDENT.findall(text):
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        refs.metrics.add(name)
    return refs


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    labels: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Catalogue:
    target_labels: frozenset[str]
    metrics: dict[str, Metric]

    def resolve(self, series_name: str) -> Metric | None:
        """The catalogue metric a series name belongs to (histogram parts included)."""
        if series_name in self.metrics:
            return self.metrics[series_name]
        for suffix in ("_bucket", "_sum", "_count"):
            base = series_name.removesuffix(suffix)
            if base != series_name and base in self.metrics:
                metric = self.metrics[base]
                if metric.type == "histogram":
                    return metric
        return None

    def labels_of(self, series_name: str) -> set[str]:
        metric = self.resolve(series_name)
        assert metric is not None, series_name
        extra = {"le"} if series_name.endswith("_bucket") else set()
        return set(metric.labels) | set(self.target_labels) | extra


def load_catalogue() -> Catalogue:
    raw: dict[str, Any] = yaml.safe_load((DEPLOY / "metrics.yml").read_text())
    metrics = {
        m["name"]: Metric(m["name"], m["type"], tuple(m["labels"]), m["source"])
        for m in raw["metrics"]
    }
    return Catalogue(frozenset(raw["target_labels"]), metrics)


def check_expression_against_catalogue(
    expr: str, catalogue: Catalogue, recorded: dict[str, set[str]] | None = None
) -> list[str]:
    """Problems with ``expr``: unknown metrics, labels no referenced metric carries."""
    recorded = recorded or {}
    refs = promql_refs(expr)
    problems: list[str] = []
    available: set[str] = set()
    for name in refs.metrics:
        if name in recorded:
            available |= recorded[name]
        elif catalogue.resolve(name) is None:
            problems.append(f"unknown metric {name!r} (not in deploy/metrics.yml)")
        else:
            available |= catalogue.labels_of(name)
    if not refs.metrics:
        return problems
    for label in refs.labels - available - {"__name__"}:
        problems.append(f"label {label!r} is not on {sorted(refs.metrics)}")
    return problems
