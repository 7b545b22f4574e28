"""Schema fuzzing (issue 17 item 11): schemathesis against each service's /openapi.json.

For every operation of the three real apps (on the real broker and database, through
the shared security platform), schemathesis generates valid and invalid requests from
the service's own OpenAPI document; each is sent with a key of the role the service
serves, and the answer must be no 5xx and conform to the document: a documented status
code, a documented content type, a body matching the documented schema (problem+json
included).

Hypothesis runs in a worker thread; every request is sent on the test's event loop
(where the apps and their database clients live) through the in-process ASGI transport.
The number of examples per operation is bounded (``EXAMPLES``) to keep the module well
under a minute.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.conftest import Platform

pytestmark = [
    pytest.mark.integration,
    # Raised from inside schemathesis' own strategies, not ours.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Outside the documented API surface (no data; covered by test_authorization).
SKIPPED_PATHS = ("/dashboard",)


def _send(
    client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop, kwargs: dict[str, Any]
) -> httpx.Response:
    """A request built by schemathesis (requests-style keyword arguments), sent on the
    test's event loop from the Hypothesis thread."""
    method, url = kwargs.pop("method"), kwargs.pop("url")
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["content"] = json.dumps(kwargs.pop("json")).encode()
        kwargs["headers"].setdefault("Content-Type", "application/json")
    if "data" in kwargs:
        data = kwargs.pop("data")
        body["content"] = data.encode() if isinstance(data, str) else data
    if "files" in kwargs:
        body["files"] = kwargs.pop("files")
    request = client.request(
        method,
        url,
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        cookies=kwargs.get("cookies") or None,
        **body,
    )
    future = asyncio.run_coroutine_threadsafe(request, loop)
    try:
        return future.result(timeout=30)
    except FutureTimeout:
        future.cancel()
        raise


def fuzz(
    schema: Any,
    send: Callable[[dict[str, Any]], httpx.Response],
    headers: dict[str, str],
) -> list[str]:
    """Every failure found (operation, request, status, what failed), in no order."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(SKIPPED_PATHS):
            continue
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def one(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
            response = send(kwargs)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # a check failed: record, go on
                failures.append(
                    f"{case.method} {case.path}: {response.status_code} "
                    f"for {case.as_curl_command(headers=headers)}\n"
                    f"  {type(exc).__name__}: {str(exc)[:600]}"
                )

        one()
    return failures


@pytest.mark.parametrize("service", ["enrolment", "matching", "reporting"])
async def test_every_operation_answers_as_documented(platform: Platform, service: str) -> None:
    client: httpx.AsyncClient = getattr(platform, service)
    key = {
        "enrolment": platform.keys.provider_gm,
        "matching": platform.keys.coordinator_gm,
        "reporting": platform.keys.analyst,
    }[service]
    document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    loop = asyncio.get_running_loop()
    failures = await asyncio.to_thread(
        fuzz,
        schema,
        lambda kwargs: _send(client, loop, kwargs),
        {"Authorization": f"Bearer {key}"},
    )
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(sorted(failures)[:20])
