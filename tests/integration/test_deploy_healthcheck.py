"""The image's HEALTHCHECK script run as the container runs it (a separate process), against
a real HTTP server on a loopback port: healthy on 200 from /healthz, unhealthy otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "healthcheck.py"


@contextmanager
def serving(status: int) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_check(service: str, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        f"{service.upper()}_HTTP_HOST": "0.0.0.0",
        f"{service.upper()}_HTTP_PORT": str(port),
        "PYTHONPATH": str(SCRIPT.parents[2]),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), service],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthy_when_healthz_answers_200() -> None:
    with serving(200) as port:
        result = run_check("matching", port)
    assert result.returncode == 0, result.stderr


def test_unhealthy_when_healthz_answers_an_error() -> None:
    with serving(503) as port:
        result = run_check("enrolment", port)
    assert result.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz did not answer 200" in result.stderr


def test_unhealthy_when_nothing_listens() -> None:
    with serving(200) as port:
        pass  # the port is free again
    result = run_check("reporting", port)
    assert result.returncode == 1
