"""The Dockerfile, its build context (.dockerignore) and the container health check,
checked without a Docker engine."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
from deploy_support import DEPLOY, REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def build_args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest
    )


def test_runtime_image_is_python_311_slim_and_non_root() -> None:
    runtime = stages()[-1]
    base = runtime[0][1].split()[0]
    assert base.startswith("${") or base == "python:3.11-slim"
    assert build_args()["PYTHON_IMAGE"] == "python:3.11-slim"
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid (runAsNonRoot can verify it)"
    k8s_uid = re.search(r"runAsUser: (\d+)", (DEPLOY / "k8s/base/enrolment.yaml").read_text())
    assert k8s_uid and k8s_uid.group(1) == uid


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    syncs = re.findall(r"uv sync [^&;]*", runs)
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync, sync
        assert "--all-extras" not in sync and "--extra" not in sync, sync


def test_healthcheck_and_default_command() -> None:
    runtime = dict(stages()[-1])
    assert "/app/healthcheck.py" in runtime["HEALTHCHECK"]
    command = shlex.split(runtime["CMD"].replace(",", " ").strip("[]"))
    assert command == ["python", "-m", "services.enrolment"]


def _dockerignore_includes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    included = True
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            candidates += list(parts)
            pattern = pattern[3:]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            included = negate
    return included


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copies = [
        rest for keyword, rest in instructions() if keyword == "COPY" and "--from=" not in rest
    ]
    assert copies
    for copy in copies:
        sources = [a for a in copy.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
            assert _dockerignore_includes(source), f"{source} is excluded by .dockerignore"
    mounts = re.findall(r"source=([^,\s]+)", " ".join(r for k, r in instructions() if k == "RUN"))
    for source in mounts:
        assert _dockerignore_includes(source), source


@pytest.mark.parametrize(
    "path", [".venv/bin/python", "tests/conftest.py", ".git/HEAD", "bench/x.py", ".data/db"]
)
def test_build_context_leaves_out_local_state(path: str) -> None:
    assert not _dockerignore_includes(path)


def test_build_context_has_what_the_wheel_needs() -> None:
    """The project is installed as a wheel: hatch needs these packages and the readme."""
    for path in ("pyproject.toml", "uv.lock", "README.md", "shared", "services", "devstack"):
        assert _dockerignore_includes(path), path


# --------------------------------------------------------------------- health check -----


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cg_healthcheck", DEPLOY / "docker" / "healthcheck.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "service"),
    [
        (b"python\0-m\0services.enrolment\0", "enrolment"),
        (b"/app/.venv/bin/python3\0-X\0dev\0-m\0services.reporting\0", "reporting"),
        (b"python\0-m\0services.matching.__main__\0", "matching"),
        (b"/app/.venv/bin/matching-service\0", "matching"),
        (b"python\0-m\0services.enrolment.admin\0list-keys\0", "enrolment"),
        (b"python\0-m\0http.server\0", None),
        (b"sleep\0infinity\0", None),
        (b"", None),
    ],
)
def test_health_check_finds_the_service_from_the_command_line(
    healthcheck: ModuleType, cmdline: bytes, service: str | None
) -> None:
    assert healthcheck.service_from_cmdline(cmdline) == service


def test_health_check_uses_the_services_own_port_settings(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ENROLMENT_HTTP_PORT", "ENROLMENT_HTTP_HOST", "COMMONGROUND_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert healthcheck.healthz_url("enrolment") == "http://127.0.0.1:8001/healthz"
    monkeypatch.setenv("ENROLMENT_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("ENROLMENT_HTTP_PORT", "9101")
    assert healthcheck.healthz_url("enrolment") == "http://127.0.0.1:9101/healthz"
    monkeypatch.setenv("MATCHING_HTTP_HOST", "::")
    assert healthcheck.healthz_url("matching") == "http://[::1]:8002/healthz"


def test_health_check_fails_when_it_cannot_tell_the_service(healthcheck: ModuleType) -> None:
    assert healthcheck.main(["not-a-service"]) == 1
