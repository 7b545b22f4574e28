"""The answer of every ``.csv`` route: an attachment, never cached (it holds report
figures or waiting lists, not for a shared cache)."""

from __future__ import annotations

from typing import Any

from fastapi import Response

# For a route's ``responses=``: the OpenAPI document names the media type.
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}


def csv_download(body: str, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
