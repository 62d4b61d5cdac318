"""Reading request bodies within the configured size limit, and request credentials."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from omnirelay.gateway.requests import parse_json_object
from omnirelay.wire.errors import RequestTooLarge


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
    """The key from ``Authorization: Bearer`` or, for Anthropic-style clients, ``x-api-key``."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None
