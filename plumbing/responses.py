"""JSON responses and the one error body of every process: ``{"error": code, "detail": text}``.

A leaf module: the web plumbing and the admin (fault) endpoints both answer with it.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from starlette.responses import Response

JSON = "application/json"
# A 503 is a refusal for now, never for good (shop.errors.Unavailable): say when to try again (RFC 9110 10.2.3).
RETRY_AFTER = {"retry-after": "1"}


class ErrorBody(msgspec.Struct):
    error: str
    detail: str


def json_response(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(payload), status, headers=headers, media_type=JSON)


def error_response(status: int, code: str, detail: str) -> Response:
    return json_response(ErrorBody(code, detail), status, RETRY_AFTER if status == 503 else None)
