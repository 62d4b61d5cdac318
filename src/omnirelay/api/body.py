"""Reading request bodies within the configured size limit, and request credentials."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from omnirelay.gateway.requests import parse_json_object
from omnirelay.wire.errors import RequestTooLarge

SECRET_HEADERS = ("x-api-key", "api-key", "x-goog-api-key", "mj-api-secret")


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    body, _size = await read_json_sized(request, limit)
    return body


async def read_json_sized(request: web.Request, limit: int) -> tuple[dict[str, Any], int]:
    """The body as a JSON object, and its size in bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(
            f"The request body is {request.content_length} bytes; this gateway accepts at "
            f"most {limit}. Send a smaller one."
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestTooLarge(
            f"The request body is larger than the {limit} bytes this gateway accepts."
        ) from exc
    return parse_json_object(raw), len(raw)


def bearer_secret(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer``, else where each dialect's SDK puts it:
    ``x-api-key`` (Anthropic), ``api-key`` (Azure), ``x-goog-api-key`` or the ``key`` query
    parameter (Gemini), ``mj-api-secret`` (midjourney-proxy's clients).

    A key in the query string is never written anywhere: the access log is off (``serve``,
    ``workers``) and a call's log row keeps the name of its endpoint, not its URL.
    """
    headers = request.headers
    header = headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in SECRET_HEADERS:
        secret = headers.get(name)
        if secret:
            return secret
    return request.query.get("key") or None
