"""yamllint over every YAML file of the deployment (compose, Prometheus, Grafana
provisioning, OpenTelemetry, Kubernetes): syntax, duplicate keys, indentation, truthy
values that YAML 1.1 readers would turn into booleans."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import DEPLOY, REPO
from yamllint import linter
from yamllint.config import YamlLintConfig

CONFIG = YamlLintConfig(
    """
extends: default
rules:
  line-length: {max: 160, allow-non-breakable-inline-mappings: true}
  document-start: disable
  comments: {min-spaces-from-content: 1}
  comments-indentation: disable
  indentation: {spaces: 2, indent-sequences: whatever}
  truthy: {allowed-values: ["true", "false"], check-keys: false}
"""
)

FILES = sorted([REPO / "docker-compose.yml", *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def test_there_are_yaml_files_to_lint() -> None:
    assert len(FILES) >= 12


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(Path(p).relative_to(REPO)))
def test_yaml_file_is_clean(path: Path) -> None:
    problems = [
        f"{path.relative_to(REPO)}:{p.line}:{p.column}: {p.message}"
        for p in linter.run(path.read_text(), CONFIG, str(path))
        if p.level == "error"
    ]
    assert problems == []
