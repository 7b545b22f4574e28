"""docker-compose.yml validated offline by docker-compose itself (`config`), then read for
what the platform needs: required secrets, one image for three services, health-gated
start-up order, Kafka listeners and topics, the MongoDB replica set."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, REPO

from shared.topics import all_topics
from tests.conftest import require_tool

COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"enrolment": 8001, "matching": 8002, "reporting": 8003}
SECRETS = {
    "ENROLMENT_PSEUDONYM_KEY": "test-pseudonym-key-0123456789abcdef0123456789abcdef",
    "MONGO_ROOT_PASSWORD": "root-pw-0123",
    "ENROLMENT_MONGO_PASSWORD": "enrolment-pw-0123",
    "MATCHING_MONGO_PASSWORD": "matching-pw-0123",
    "REPORTING_MONGO_PASSWORD": "reporting-pw-0123",
    "GRAFANA_ADMIN_PASSWORD": "grafana-pw-0123",
    "ENROLMENT_DATA_KEY_ENCRYPTION_KEYS": "k1:test-data-key-encryption-0123456789abcdef",
    "COMMONGROUND_LEARNER_KEY_WRAPPING_KEYS": "w1:test-key-wrapping-0123456789abcdef",
}


def compose(
    args: list[str], env: dict[str, str], tmp_path: Path, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """docker-compose with only ``env`` (and ``env_file``) as configuration: no .env file
    from the working tree, no stray variables from the caller's environment."""
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS and not k.startswith(("COMMONGROUND_", "COMPOSE_", "KAFKA_"))
    }
    return subprocess.run(
        [require_tool("docker-compose"), "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables set)."""
    result = compose(["config"], SECRETS, tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_file_is_valid(tmp_path: Path) -> None:
    result = compose(["config", "-q"], SECRETS, tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    missing = {k: v for k, v in SECRETS.items() if k != "ENROLMENT_PSEUDONYM_KEY"}
    result = compose(["config", "-q"], missing, tmp_path)
    assert result.returncode != 0
    assert "ENROLMENT_PSEUDONYM_KEY is required" in result.stderr


def test_every_secret_is_required_and_has_no_default() -> None:
    text = COMPOSE.read_text()
    references = re.findall(r"\$\{([A-Z0-9_]+)(:?[-?])?([^}]*)\}", text)
    secret_like = re.compile(r"PASSWORD|SECRET|_KEYS?$|TOKEN")
    seen = set()
    for name, operator, message in references:
        if secret_like.search(name):
            seen.add(name)
            assert operator == ":?", f"${{{name}}} must be required (${{{name}:?message}})"
            assert message.strip(), f"${{{name}:?}} needs a message saying what to set"
    assert seen == set(SECRETS)


def test_make_env_script_provides_every_required_secret(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(DEPLOY / "make-env.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    values = dict(
        line.split("=", 1)
        for line in result.stdout.splitlines()
        if line and not line.startswith("#")
    )
    assert set(values) == set(SECRETS)
    for name, value in values.items():
        # Key rings are "id:secret" (docs/privacy.md).
        assert re.fullmatch(r"(?:[a-z0-9]+:)?[0-9a-f]{32,}", value), (
            f"{name} must be long and URL-safe"
        )
    assert len(values["ENROLMENT_PSEUDONYM_KEY"]) >= 64  # 32 bytes
    env_file = tmp_path / "stack.env"
    env_file.write_text(result.stdout)
    check = compose(["config", "-q"], {}, tmp_path, env_file=env_file)
    assert check.returncode == 0, check.stderr
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_three_services_from_one_image(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    images = {services[name]["image"] for name in SERVICES}
    assert len(images) == 1
    for name, port in SERVICES.items():
        service = services[name]
        assert Path(service["build"]["context"]).resolve() == REPO
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert (REPO / "services" / name / "__main__.py").exists()
        env = service["environment"]
        prefix = name.upper()
        assert env[f"{prefix}_HTTP_HOST"] == "0.0.0.0"
        assert str(env[f"{prefix}_HTTP_PORT"]) == str(port)
        assert any(p["target"] == port and p["published"] == port for p in _ports(service))
        assert env["COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["COMMONGROUND_OTEL_ENABLED"] == "true"
        assert env["COMMONGROUND_OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        url = env["COMMONGROUND_MONGODB_URL"]
        assert url.startswith(
            f"mongodb://{name}:{SECRETS[f'{prefix}_MONGO_PASSWORD']}@mongodb:27017/"
        )
        assert "replicaSet=rs0" in url
        assert service.get("read_only") is True
        assert "ALL" in service.get("cap_drop", [])
    assert (
        services["enrolment"]["environment"]["ENROLMENT_PSEUDONYM_KEY"]
        == SECRETS["ENROLMENT_PSEUDONYM_KEY"]
    )
    assert services["enrolment"]["environment"]["ENROLMENT_ALLOW_DEV_SECRETS"] == "false"


def _ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append({"target": int(port["target"]), "published": int(port["published"])})
        else:
            *_, published, target = str(port).split(":")
            ports.append({"target": int(target.split("/")[0]), "published": int(published)})
    return ports


def test_services_wait_for_healthy_infrastructure(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["mongodb"]["condition"] == "service_healthy"
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"
        assert depends["mongodb-init"]["condition"] == "service_completed_successfully"
    for name in ("kafka-init", "mongodb-init"):
        (dependency,) = services[name]["depends_on"]
        assert services[name]["depends_on"][dependency]["condition"] == "service_healthy"
        assert services[name]["restart"] == "no"
    for name in ("kafka", "mongodb", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    # every depends_on condition names a service that exists and, if it must be healthy,
    # has a health check
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)


def test_kafka_runs_kraft_with_listeners_for_the_network(rendered: dict[str, Any]) -> None:
    env = rendered["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in str(env).lower()
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "a base64 UUID"


def test_topic_init_creates_every_contract_and_dead_letter_topic(tmp_path: Path) -> None:
    """Run the real init script with a stand-in for kafka-topics.sh that records its calls."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    compose_env = yaml.safe_load(COMPOSE.read_text())["services"]["kafka-init"]["environment"]
    partitions = re.search(r":-(\d+)\}", compose_env["TOPIC_PARTITIONS"])
    assert partitions and partitions.group(1) == "6"
    subprocess.run(
        ["bash", str(DEPLOY / "kafka" / "create-topics.sh")],
        env={
            **os.environ,
            "KAFKA_TOPICS": str(fake),
            "BOOTSTRAP_SERVERS": "kafka:9092",
            "TOPIC_PARTITIONS": "6",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    created = {}
    for line in log.read_text().splitlines():
        args = line.split()
        if "--create" in args:
            assert "--if-not-exists" in args
            assert args[args.index("--bootstrap-server") + 1] == "kafka:9092"
            created[args[args.index("--topic") + 1]] = int(args[args.index("--partitions") + 1])
    assert set(created) == set(all_topics())
    assert set(created.values()) == {6}


def test_mongodb_runs_as_a_replica_set_with_an_init(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert services["mongodb"]["image"].startswith("mongo:7")
    entrypoint = (DEPLOY / "mongodb" / "mongodb-entrypoint.sh").read_text()
    assert "--replSet" in entrypoint and "--keyFile" in entrypoint
    init = (DEPLOY / "mongodb" / "init-replica-set.js").read_text()
    assert "rs.initiate(" in init and "isWritablePrimary" in init
    for name in SERVICES:
        assert f"{name.upper()}_MONGO_PASSWORD" in services["mongodb-init"]["environment"]
        # each service's user may only touch its own database
        assert "readWrite" in init and "cg_${service}" in init


def test_init_scripts_parse(tmp_path: Path) -> None:
    for script in (
        DEPLOY / "mongodb" / "mongodb-entrypoint.sh",
        DEPLOY / "kafka" / "create-topics.sh",
        DEPLOY / "make-env.sh",
    ):
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: init-replica-set.js syntax not checked")
    subprocess.run(
        [node, "--check", str(DEPLOY / "mongodb" / "init-replica-set.js")], check=True, timeout=30
    )


def test_mounted_config_files_exist(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith(("/", ".")) and not source.startswith("/var/run"):
                assert Path(source if Path(source).is_absolute() else REPO / source).exists(), (
                    name,
                    source,
                )
