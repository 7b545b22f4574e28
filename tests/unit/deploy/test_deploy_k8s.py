"""Kubernetes manifests (deploy/k8s): rendered like `kubectl kustomize` does, every built-in
resource validated against the Kubernetes OpenAPI schemas bundled in kubernetes-validate
(offline), and the KEDA and Strimzi custom resources checked structurally."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_support import DEPLOY, REPO

from shared.topics import CONTRACT_TOPICS, all_topics

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"
SERVICES = {"enrolment": 8001, "matching": 8002, "reporting": 8003}
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("kafka.strimzi.io/v1beta2", "KafkaTopic")}
Resource = dict[str, Any]


# --------------------------------------------------------------------- rendering --------


def _load(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(base: Any, patch: Any) -> Any:
    """Merge patch semantics for maps (lists are replaced): all our patches need."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(patch)


def render(directory: Path) -> list[Resource]:
    """A small kustomize: resources, namespace, images, replicas and patches by
    kind/name. It is compared with real `kubectl kustomize` output whenever kubectl is
    installed, so it cannot silently drift from kustomize."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
    assert set(kustomization) <= allowed, f"extend render() for {set(kustomization) - allowed}"
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else _load(path)
    for patch_entry in kustomization.get("patches", []):
        for patch in _load(directory / patch_entry["path"]):
            targets = [
                i
                for i, r in enumerate(resources)
                if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]
            ]
            assert len(targets) == 1, f"patch target {patch['kind']}/{patch['metadata']['name']}"
            resources[targets[0]] = _merge(resources[targets[0]], patch)
    for resource in resources:
        if "namespace" in kustomization and resource["kind"] != "Namespace":
            resource["metadata"]["namespace"] = kustomization["namespace"]
        for replica in kustomization.get("replicas", []):
            if resource["kind"] == "Deployment" and resource["metadata"]["name"] == replica["name"]:
                resource["spec"]["replicas"] = replica["count"]
        for image in kustomization.get("images", []):
            for container in _containers(resource):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    return resources


def _containers(resource: Resource) -> list[dict[str, Any]]:
    if resource["kind"] != "Deployment":
        return []
    containers: list[dict[str, Any]] = resource["spec"]["template"]["spec"]["containers"]
    return containers


def _keyed(resources: list[Resource]) -> dict[tuple[str, str, str], Resource]:
    return {
        (r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]): r for r in resources
    }


KUSTOMIZATIONS = ["base", "overlays/production", "kafka-topics"]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def kustomization(request: pytest.FixtureRequest) -> tuple[str, list[Resource]]:
    return request.param, render(K8S / request.param)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: manifests rendered by the tests' own renderer only")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    from_kubectl = _keyed([d for d in yaml.safe_load_all(result.stdout) if d])
    ours = _keyed(render(K8S / name))
    assert set(ours) == set(from_kubectl)
    for key, resource in ours.items():
        assert resource == from_kubectl[key], key


# --------------------------------------------------------------------- schemas ----------


def test_every_builtin_resource_matches_the_kubernetes_schema(
    kustomization: tuple[str, list[Resource]],
) -> None:
    name, resources = kustomization
    checked = 0
    for resource in resources:
        if (resource["apiVersion"], resource["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            where = f"{resource['kind']}/{resource['metadata']['name']}"
            pytest.fail(f"{name}: {where}: {path}: {error.message}")
        checked += 1
    if name != "kafka-topics":
        assert checked >= 10


def test_only_known_custom_resources(kustomization: tuple[str, list[Resource]]) -> None:
    _, resources = kustomization
    for resource in resources:
        if "." in resource["apiVersion"].split("/")[0] and not resource["apiVersion"].startswith(
            ("apps/", "policy/")
        ):
            assert (resource["apiVersion"], resource["kind"]) in CUSTOM_KINDS, resource["kind"]


# --------------------------------------------------------------------- deployments ------


def by_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return render(K8S / "base")


@pytest.fixture(scope="module")
def production() -> list[Resource]:
    return render(K8S / "overlays" / "production")


def test_each_service_has_deployment_service_and_disruption_budget(base: list[Resource]) -> None:
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ScaledObject"):
        assert set(by_kind(base, kind)) == set(SERVICES), kind


def test_deployments_probe_limit_and_run_as_non_root(base: list[Resource]) -> None:
    for name, deployment in by_kind(base, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert (REPO / "services" / name / "__main__.py").exists()
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][section]), (name, section)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        sources = {
            next(iter(k for k in source if k.endswith("Ref"))): next(iter(source.values()))["name"]
            for source in container["envFrom"]
        }
        assert sources == {"configMapRef": "commonground-config", "secretRef": f"{name}-secrets"}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[f"{name.upper()}_HTTP_HOST"] == "0.0.0.0"
        assert env[f"{name.upper()}_HTTP_PORT"] == str(SERVICES[name])
        (port,) = container["ports"]
        assert port["containerPort"] == SERVICES[name] and port["name"] == "http"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(SERVICES[name])


def test_services_and_budgets_select_their_pods(base: list[Resource]) -> None:
    deployments = by_kind(base, "Deployment")
    for kind in ("Service", "PodDisruptionBudget"):
        for name, resource in by_kind(base, kind).items():
            pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
            selector = resource["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selector.items() <= pod_labels.items(), (kind, name)
    for name, service in by_kind(base, "Service").items():
        (port,) = service["spec"]["ports"]
        assert port["port"] == SERVICES[name] and port["targetPort"] == "http"


def test_config_points_at_external_kafka_and_mongodb_without_credentials(
    base: list[Resource],
) -> None:
    config = by_kind(base, "ConfigMap")["commonground-config"]["data"]
    assert (
        config["COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS"] == "commonground-kafka-bootstrap.kafka:9092"
    )
    url = config["COMMONGROUND_MONGODB_URL"]
    assert url.startswith("mongodb://") and "replicaSet=" in url
    assert "@" not in url, "credentials belong in each service's Secret"
    assert config["COMMONGROUND_OTEL_ENABLED"] == "true"
    assert not any(r["kind"] == "Secret" for r in base), "no secret values in the repository"


# --------------------------------------------------------------------- KEDA -------------


def _consumed_topics(service: str) -> set[str]:
    """Topics named in the service's @subscriber(...) calls (read from the source)."""
    import ast

    from shared import topics as topic_names

    consumed: set[str] = set()
    for path in (REPO / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "subscriber"
            ):
                for arg in node.args:
                    if isinstance(arg, ast.Attribute) and hasattr(topic_names, arg.attr):
                        consumed.add(getattr(topic_names, arg.attr))
                    elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        consumed.add(arg.value)
    return consumed


def test_scaled_objects_scale_each_service_on_its_consumer_lag(base: list[Resource]) -> None:
    bootstrap = by_kind(base, "ConfigMap")["commonground-config"]["data"][
        "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS"
    ]
    deployments = by_kind(base, "Deployment")
    for name, scaled in by_kind(base, "ScaledObject").items():
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == name and name in deployments
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["triggers"], name
        trigger_topics = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            assert meta["bootstrapServers"] == bootstrap
            assert meta["consumerGroup"] == name, "the group id defaults to the service name"
            assert meta["topic"] in CONTRACT_TOPICS
            assert int(meta["lagThreshold"]) > 0
            assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata are strings"
            trigger_topics.add(meta["topic"])
        consumed = _consumed_topics(name)
        assert trigger_topics <= consumed, f"{name} does not consume {trigger_topics - consumed}"
    assert {"enrolment.inbound.v1"} <= {
        t["metadata"]["topic"]
        for t in by_kind(base, "ScaledObject")["enrolment"]["spec"]["triggers"]
    }


def _partitions() -> int:
    topics = [r for r in render(K8S / "kafka-topics") if r["kind"] == "KafkaTopic"]
    counts: set[int] = {int(t["spec"]["partitions"]) for t in topics}
    assert len(counts) == 1
    return counts.pop()


def test_production_replicas_fit_keda_bounds_and_partitions(production: list[Resource]) -> None:
    partitions = _partitions()
    deployments = by_kind(production, "Deployment")
    for name, scaled in by_kind(production, "ScaledObject").items():
        replicas = deployments[name]["spec"]["replicas"]
        spec = scaled["spec"]
        assert replicas >= 2, f"{name}: production runs more than one replica"
        assert replicas == spec["minReplicaCount"], f"{name}: an apply would fight KEDA's HPA"
        assert spec["maxReplicaCount"] <= partitions, f"{name}: idle consumers beyond partitions"
        assert spec["triggers"], "the patch keeps the base's triggers"
    for resource in production:
        assert (
            resource["metadata"].get("namespace") == "commonground"
            or resource["kind"] == "Namespace"
        )
        for container in _containers(resource):
            assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_strimzi_topics_are_the_contract_topics() -> None:
    topics = [r for r in render(K8S / "kafka-topics") if r["kind"] == "KafkaTopic"]
    assert {t["spec"]["topicName"] for t in topics} == set(all_topics())
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "commonground-kafka"
        assert topic["spec"]["replicas"] >= 3
        assert topic["spec"]["config"]["min.insync.replicas"] < topic["spec"]["replicas"]
        assert topic["metadata"]["namespace"] == "kafka"
