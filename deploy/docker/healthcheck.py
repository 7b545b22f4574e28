"""Container health check for the one Common Ground image: ``GET /healthz`` of the service
this container runs; exit status 0 when it answers 200, 1 otherwise.

The image runs any of the three services, chosen by its command
(``python -m services.<name>``), so the check finds the service from PID 1's command line
(or from its first argument) and reads that service's own settings class, so the port comes
from ``<SERVICE>_HTTP_PORT`` / ``COMMONGROUND_HTTP_PORT`` / the service default exactly as
the service resolves it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import urllib.error
import urllib.request
from pathlib import Path

SERVICES = ("enrolment", "matching", "reporting")
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def service_from_cmdline(raw: bytes) -> str | None:
    """The service named by a NUL-separated command line such as ``/proc/1/cmdline``.

    Recognises ``python -m services.<name>`` and the console scripts
    ``<name>-service``.
    """
    args = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    for index, arg in enumerate(args):
        module = args[index + 1] if arg == "-m" and index + 1 < len(args) else None
        if module is not None:
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "services" and parts[1] in SERVICES:
                return parts[1]
        name = Path(arg).name
        if name.endswith("-service") and name.removesuffix("-service") in SERVICES:
            return name.removesuffix("-service")
    return None


def healthz_url(service: str) -> str:
    """``http://host:port/healthz`` of ``service``, from its settings (environment)."""
    from shared.settings import ServiceSettings

    module = importlib.import_module(f"services.{service}.settings")
    classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ServiceSettings)
        and cls is not ServiceSettings
        and cls.service_name == service
    ]
    if len(classes) != 1:
        raise LookupError(f"services.{service}.settings defines no single settings class")
    settings = classes[0]()
    host = WILDCARD_HOSTS.get(settings.http_host, settings.http_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/healthz"


def healthy(url: str, timeout_s: float = 4.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    if argv:
        service: str | None = argv[0]
    else:
        try:
            service = service_from_cmdline(Path("/proc/1/cmdline").read_bytes())
        except OSError:
            service = None
    if service not in SERVICES:
        sys.stderr.write(f"healthcheck: cannot tell which service runs (got {service!r})\n")
        return 1
    url = healthz_url(service)
    if healthy(url):
        return 0
    sys.stderr.write(f"healthcheck: {url} did not answer 200\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
