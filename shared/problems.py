"""RFC 9457 problem details (``application/problem+json``) for every HTTP error.

Validation failures list every field error with a JSON-pointer-like path, so a
provider can fix a submission without guessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://commonground.example/problems/"


class Problem(Exception):
    """Raise from a route to answer with a problem+json document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.errors = errors or []
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            doc["detail"] = self.detail
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        return doc


# The detail of every 422 for a request the schema refuses (the errors say which fields).
SCHEMA_MISMATCH = "The request does not match the schema; see errors for each field."


def validation_failed(detail: str, errors: list[dict[str, Any]] | None = None) -> Problem:
    """The 422 for a request that breaks a rule, in one shape everywhere: ``errors`` as
    :func:`field_errors` makes them, so each names its field."""
    return Problem(422, "Validation failed", detail, slug="validation-failed", errors=errors)


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic error list → ``[{pointer, message, type}]`` (input values are never echoed,
    as they may be personal data)."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append(
            {
                "pointer": "/" + "/".join(loc) if loc else "",
                "field": ".".join(loc),
                "message": err.get("msg", "invalid"),
                "type": err.get("type", "value_error"),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problem = validation_failed(SCHEMA_MISMATCH, field_errors(exc.errors()))
        return problem_response(problem, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = Problem(
            exc.status_code,
            _TITLES.get(exc.status_code, "Error"),
            str(exc.detail) if exc.detail else None,
            headers=dict(exc.headers or {}),
        )
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    503: "Service unavailable",
}


class BodySizeLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413 before they are read into memory."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        route_limits: Sequence[tuple[str, int]] = (),
    ) -> None:
        """``route_limits``: (path regex, bytes) pairs for routes with a lower limit than
        ``max_bytes`` (the first full match wins), enforced while streaming too."""
        self.app = app
        self.max_bytes = max_bytes
        self.route_limits = [(re.compile(p), n) for p, n in route_limits]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.route_limits:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(str(scope.get("path", "")))
        too_large = Problem(
            413,
            "Payload too large",
            f"Request bodies are limited to {max_bytes} bytes.",
            slug="payload-too-large",
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                await problem_response(too_large, scope.get("path"))(scope, receive, send)
                return
        received = 0
        response_started = False
        too_large_seen = False

        async def limited_receive() -> Message:
            nonlocal received, too_large_seen
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    too_large_seen = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if too_large_seen:
                # The framework caught _BodyTooLarge while reading the body (FastAPI
                # turns it into a 400): answer 413 instead, once.
                if not response_started:
                    response_started = True
                    await problem_response(too_large, scope.get("path"))(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await problem_response(too_large, scope.get("path"))(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


# ----------------------------------------------------------------------------- OpenAPI

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "code": {"type": "string"},
                },
            },
        },
    },
}
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_API_KEY_SCHEME = "ApiKey"
_STANDARD = {
    400: "The body could not be parsed (not JSON, or not the declared media type)",
    401: "No, unknown or revoked API key",
    403: "The key's role or scope does not allow this",
    404: "Unknown, or outside the caller's scope (existence not revealed)",
    409: "Conflicts with the current state",
    413: "Body too large",
    422: "Invalid request: every error has a field pointer",
    429: "Over the key's rate limit, or too many failed authentications: see Retry-After",
}


def document_problems(app: FastAPI, api_prefix: str = "/v1/") -> None:
    """Make the OpenAPI document say what the API does: every ``/v1`` operation needs a
    bearer key (a security scheme is added where a route reads the header itself) and
    declares its problem+json answers (401, 403, 429; 422 when it takes input; 404 with
    path parameters; 409 for state changes; 400 and 413 with a body), each with the Problem
    schema; FastAPI's default 422 body is replaced by it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        schemes = components.setdefault("securitySchemes", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components["schemas"].pop(name, None)
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith(api_prefix):
                continue
            for method, op in operations.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                if not op.get("security"):
                    schemes.setdefault(
                        _API_KEY_SCHEME,
                        {"type": "http", "scheme": "bearer", "description": "API key"},
                    )
                    op["security"] = [{_API_KEY_SCHEME: []}]
                params = op.get("parameters", [])
                wanted = {401, 403, 429}
                if params or "requestBody" in op:
                    wanted.add(422)
                if any(p.get("in") == "path" for p in params):
                    wanted.add(404)
                    if method == "post":
                        wanted.add(409)
                if "requestBody" in op:
                    wanted |= {400, 413}
                responses = op["responses"]
                for status in sorted(wanted):
                    responses.setdefault(str(status), {"description": _STANDARD[status]})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = dict(_PROBLEM_CONTENT)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
