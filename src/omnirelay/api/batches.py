"""OpenAI's Batch API, run by the gateway for any upstream: POST /v1/batches,
GET /v1/batches, GET /v1/batches/{batch_id} and POST /v1/batches/{batch_id}/cancel.
A key sees only its own batches."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, begin_with, no_body
from omnirelay.gateway.batches.model import batch_view
from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_METADATA = 16


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _string(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise MissingField(f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(value, str):
        raise InvalidType(f"Invalid type for '{name}': expected a string.", param=name)
    return value


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA
        or not all(
            isinstance(name, str)
            and len(name) <= 64
            and isinstance(value, str)
            and len(value) <= 512
            for name, value in metadata.items()
        )
    ):
        raise InvalidRequest(
            "'metadata' is an object of at most 16 string values (keys up to 64 characters, "
            "values up to 512).",
            param="metadata",
        )
    return metadata


async def create(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "batches.create")
    batch = await state.batches.create(
        call.key,
        input_file_id=_string(body, "input_file_id"),
        endpoint=_string(body, "endpoint"),
        completion_window=_string(body, "completion_window", "24h"),
        metadata=_metadata(body),
    )
    return _json(batch_view(batch))


async def retrieve(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "batches.retrieve", no_body)
    return _json(batch_view(await state.batches.batch(call.key, request.match_info["batch_id"])))


async def cancel(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "batches.cancel", no_body)
    return _json(batch_view(await state.batches.cancel(call.key, request.match_info["batch_id"])))


async def list_batches(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "batches.list", no_body)
    try:
        limit = int(request.query.get("limit", DEFAULT_PAGE))
    except ValueError as exc:
        raise InvalidRequest("'limit' must be an integer.", param="limit") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_PAGE}.", param="limit")
    rows, more = await state.batches.batches(
        call.key, limit=limit, after=request.query.get("after") or None
    )
    data = [batch_view(batch) for batch in rows]
    page: dict[str, Any] = {"object": "list", "data": data, "has_more": more}
    if data:
        page["first_id"], page["last_id"] = data[0]["id"], data[-1]["id"]
    return _json(page)
