"""``GET /dashboard``: a public, static page shell; every number on it comes from the
authenticated, disclosure-controlled report endpoints.

The page holds no data. It asks for a reporting key (or takes one from the URL
fragment ``#key=…``, which browsers never send to a server), keeps it in the tab's
``sessionStorage`` and calls ``/v1/reports/*`` with ``Authorization: Bearer``. The
assets are served by this service itself (the machines have no internet), under a
strict Content-Security-Policy: no inline script, no third-party origin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

router = APIRouter(tags=["dashboard"])

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("services.reporting").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(
        _asset(name),
        media_type=_ASSETS[name],
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/dashboard", response_class=Response, summary="The reporting dashboard page")
async def dashboard() -> Response:
    return _serve("dashboard.html")


@router.get("/dashboard/app.js", response_class=Response, include_in_schema=False)
async def dashboard_js() -> Response:
    return _serve("dashboard.js")


@router.get("/dashboard/app.css", response_class=Response, include_in_schema=False)
async def dashboard_css() -> Response:
    return _serve("dashboard.css")
