"""Prometheus config and alert rules (checked and unit-tested by promtool), the Grafana
dashboards and provisioning, and the metrics catalogue they are all built on."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from deploy_support import DEPLOY, REPO, Catalogue, check_expression_against_catalogue, promql_refs
from prometheus_client import CollectorRegistry

from tests.conftest import require_tool

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVISIONING = DEPLOY / "grafana" / "provisioning"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return groups


def alert_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}


# --------------------------------------------------------------------- promtool ---------


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_expects_it_to_fire() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for group in tests
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alert_rules()) - fired == set()


def test_scrape_config_labels_every_service_target() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "commonground")
    labelled = {
        target: group["labels"]["service"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert labelled == {
        "enrolment:8001": "enrolment",
        "matching:8002": "matching",
        "reporting:8003": "reporting",
    }


# --------------------------------------------------------------------- alert rules ------

REQUIRED_ALERTS = {
    "CommonGroundServiceDown": "up",
    "CommonGroundConsumerLagGrowing": "commonground_consumer_lag",
    "CommonGroundDeadLetters": "commonground_dead_letters_total",
    "CommonGroundHttp5xxRatioHigh": "http_requests_total",
    "CommonGroundMessageErrorRatioHigh": "faststream_received_processed_messages_total",
    "CommonGroundIntakeStalled": "commonground_enrolments_accepted_total",
}


def test_required_alerts_exist_with_severity_and_runbook() -> None:
    rules = alert_rules()
    readme = (DEPLOY / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)
    }
    for name, metric in REQUIRED_ALERTS.items():
        assert name in rules, name
        assert metric in promql_refs(rules[name]["expr"]).metrics, name
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{name}: README has no section #{anchor}"


def test_service_down_and_lag_alerts_have_the_specified_durations() -> None:
    rules = alert_rules()
    assert rules["CommonGroundServiceDown"]["for"] == "2m"
    lag = rules["CommonGroundConsumerLagGrowing"]
    assert lag["for"] == "5m"
    assert "deriv(commonground_consumer_lag[5m])" in lag["expr"]


def test_rules_use_only_catalogued_metrics_and_labels(catalogue: Catalogue) -> None:
    recorded: dict[str, set[str]] = {name: set() for name in recording_rules()}
    problems = {
        name: check_expression_against_catalogue(rule["expr"], catalogue, recorded)
        for name, rule in {
            **alert_rules(),
            **{k: {"expr": v} for k, v in recording_rules().items()},
        }.items()
    }
    assert {k: v for k, v in problems.items() if v} == {}


def _uk_working_hour(instant: datetime) -> int:
    local = instant.astimezone(ZoneInfo("Europe/London"))
    return int(local.weekday() < 5 and 9 <= local.hour < 17)


def _instants() -> list[datetime]:
    """Every half hour of the eight days around each clock change of 2025-2030, plus an
    ordinary instant every 7h13m through 2026."""
    instants: list[datetime] = []
    for year in range(2025, 2031):
        for month in (3, 10):
            last_sunday = max(
                datetime(year, month, day, tzinfo=UTC)
                for day in range(25, 32)
                if datetime(year, month, day).weekday() == 6
            )
            start = last_sunday - timedelta(days=4)
            instants += [start + timedelta(minutes=30 * i) for i in range(8 * 48)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    instants += [start + timedelta(minutes=433 * i) for i in range(1200)]
    return instants


def test_uk_working_hours_rule_agrees_with_the_tz_database(tmp_path: Path) -> None:
    """The hand-written British Summer Time arithmetic in PromQL, checked by promtool
    against Python's Europe/London zone at ~5800 instants, clock changes included.

    Each instant is an input series ``instant{i="k"}`` whose value is its Unix time; the
    rule's ``hour()``, ``month()``... become ``hour(instant)``... so a single evaluation
    computes the rule for every instant at once."""
    rule = recording_rules()["commonground:uk_working_hours"]
    instants = _instants()
    chunk_size = 1000  # promtool refuses queries that load over 50k samples
    cases: list[dict[str, Any]] = []
    for chunk in range(0, len(instants), chunk_size):
        expr = re.sub(
            r"\b(hour|month|day_of_month|day_of_week)\(\)",
            rf'\1(instant{{chunk="{chunk}"}})',
            rule,
        )
        expected = [
            {"labels": f'{{chunk="{chunk}",i="{k}"}}', "value": _uk_working_hour(instants[k])}
            for k in range(chunk, min(chunk + chunk_size, len(instants)))
        ]
        cases.append({"expr": expr, "eval_time": "0m", "exp_samples": expected})
    assert {e["value"] for c in cases for e in c["exp_samples"]} == {0, 1}
    (tmp_path / "empty_rules.yml").write_text("groups: []\n")
    test_file = {
        "rule_files": ["empty_rules.yml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'instant{{chunk="{k - k % chunk_size}",i="{k}"}}',
                        "values": str(int(t.timestamp())),
                    }
                    for k, t in enumerate(instants)
                ],
                "promql_expr_test": cases,
            }
        ],
    }
    # JSON is YAML, and much faster to write than PyYAML's dump.
    (tmp_path / "hours_test.yml").write_text(json.dumps(test_file))
    result = promtool("test", "rules", "hours_test.yml", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[:4000]


# --------------------------------------------------------------------- catalogue --------


def _metric_definitions() -> dict[str, tuple[str, ...]]:
    """name -> labels of every prometheus-client metric created in shared/ and services/."""
    constructors = {"counter", "gauge", "histogram", "summary"}
    found: dict[str, tuple[str, ...]] = {}
    for path in [*REPO.joinpath("shared").rglob("*.py"), *REPO.joinpath("services").rglob("*.py")]:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if callee.lower() not in constructors or not isinstance(first, ast.Constant):
                continue
            if not isinstance(first.value, str):
                continue
            labels_node = node.args[2] if len(node.args) > 2 else None
            for keyword in node.keywords:
                if keyword.arg in ("labels", "labelnames"):
                    labels_node = keyword.value
            labels: tuple[str, ...] = ()
            if isinstance(labels_node, ast.Tuple | ast.List):
                labels = tuple(
                    e.value
                    for e in labels_node.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
            found[first.value] = labels
    return found


def _faststream_metrics() -> dict[str, tuple[str, ...]]:
    from faststream.prometheus.container import MetricsContainer

    registry = CollectorRegistry()
    MetricsContainer(registry, metrics_prefix="faststream", custom_label_names=())
    found: dict[str, tuple[str, ...]] = {}
    for collector in list(registry._collector_to_names):
        name = getattr(collector, "_name", "")
        kind = getattr(collector, "_type", "")
        if kind == "counter":
            name = f"{name}_total"
        found[name] = tuple(getattr(collector, "_labelnames", ()))
    return found


def test_catalogue_matches_the_code_that_exports_the_metrics(catalogue: Catalogue) -> None:
    """Every catalogued metric exists where its ``source`` says, with those labels; if a
    service renames a metric, update deploy/metrics.yml and the dashboards/alerts."""
    ours = _metric_definitions()
    faststream = _faststream_metrics()
    problems: list[str] = []
    for metric in catalogue.metrics.values():
        if metric.source == "prometheus":
            continue
        defined = faststream if metric.source == "faststream" else ours
        if metric.name not in defined:
            problems.append(f"{metric.name}: not defined by {metric.source}")
        elif set(defined[metric.name]) != set(metric.labels):
            problems.append(
                f"{metric.name}: labels {sorted(defined[metric.name])} in code, "
                f"{sorted(metric.labels)} in deploy/metrics.yml"
            )
    assert problems == []


def test_catalogue_sources_name_real_places(catalogue: Catalogue) -> None:
    for metric in catalogue.metrics.values():
        if metric.source not in ("prometheus", "faststream"):
            assert (REPO / metric.source).exists(), metric


def test_no_metric_label_carries_special_category_data(catalogue: Catalogue) -> None:
    forbidden = {"ethnicity", "religion", "learner", "learner_ref", "pseudonym", "participant"}
    for metric in catalogue.metrics.values():
        assert not set(metric.labels) & forbidden, metric


# --------------------------------------------------------------------- Grafana ----------


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def provisioned_datasources() -> dict[str, str]:
    raw = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {d["uid"]: d["type"] for d in raw["datasources"]}


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$service": "enrolment",
    "$combined_authority": "E47000001",
}


def grafana_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every query, Grafana variables substituted."""
    out = []
    for file, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                out.append((file, panel["title"], expr))
    return out


def test_the_two_dashboards_exist() -> None:
    titles = {d["title"]: d for d in dashboards().values()}
    assert set(titles) == {
        "Common Ground — platform overview",
        "Common Ground — programmes",
    }
    uids = [d["uid"] for d in titles.values()]
    assert len(set(uids)) == len(uids)


def test_every_panel_has_a_provisioned_datasource_and_queries() -> None:
    datasources = provisioned_datasources()
    for file, dashboard in dashboards().items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{file}: duplicate panel ids"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            where = f"{file}: {panel['title']}"
            source = panel["datasource"]
            assert datasources.get(source["uid"]) == source["type"] == "prometheus", where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert target.get("datasource", source) == source, where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, where


def test_dashboards_cover_what_ops_and_programme_staff_need() -> None:
    used: dict[str, set[str]] = {}
    for file, _, expr in grafana_exprs():
        used.setdefault(file, set()).update(promql_refs(expr).metrics)
    assert {
        "faststream_received_processed_messages_total",
        "commonground_consumer_lag",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "commonground_dead_letters_total",
    } <= used["platform-overview.json"]
    assert {
        "commonground_enrolments_accepted_total",
        "commonground_enrolments_rejected_total",
        "matching_proposals_total",
        "matching_pool_size",
    } <= used["programmes.json"]


def test_dashboard_queries_use_only_catalogued_metrics_and_labels(catalogue: Catalogue) -> None:
    problems = []
    for file, title, expr in grafana_exprs():
        problems += [
            f"{file}: {title}: {p}" for p in check_expression_against_catalogue(expr, catalogue)
        ]
    assert problems == []


def test_legends_name_labels_the_queries_keep(catalogue: Catalogue) -> None:
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                legend_labels = set(
                    re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
                )
                kept = promql_refs(target["expr"]).labels | catalogue.target_labels
                assert legend_labels <= kept, (panel["title"], legend_labels - kept)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, _, expr) in enumerate(grafana_exprs())
    ]
    (tmp_path / "dashboards.rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]})
    )
    result = promtool("check", "rules", "dashboards.rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_datasources_point_at_compose_services() -> None:
    raw = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    compose_services = set(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])
    for datasource in raw["datasources"]:
        host = re.match(r"https?://([^:/]+)", datasource["url"])
        assert host and host.group(1) in compose_services, datasource


@pytest.mark.parametrize("path", ["otel/collector.yaml"])
def test_otel_collector_pipeline_is_wired(path: str) -> None:
    config = yaml.safe_load((DEPLOY / path).read_text())
    traces = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for name in traces[kind]:
            assert name in config[kind], f"{kind}: {name}"
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert any(
        config["exporters"][e]["endpoint"].startswith("jaeger:") for e in traces["exporters"]
    )
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
