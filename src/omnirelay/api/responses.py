"""The Responses API: ``POST /v1/responses``, a key's stored responses, and input tokens.

Every channel serves it (``gateway.responses``); this module only reads the request and
renders the answer.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, begin_with, no_body, send
from omnirelay.gateway.responses import DEFAULT_PAGE, ENDPOINT, MAX_PAGE, ItemsQuery
from omnirelay.wire.errors import InvalidRequest


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def create(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, ENDPOINT)
    return await send(request, await state.surface.responses.create(call, body))


async def retrieve(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT + ".retrieve", no_body)
    if request.query.get("stream", "false").lower() == "true":
        raise InvalidRequest(
            "Streaming a stored response again is not available on this gateway; fetch it "
            "without 'stream'.",
            param="stream",
        )
    return _json(await state.surface.responses.retrieve(call, request.match_info["id"]))


async def delete(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT + ".delete", no_body)
    return _json(await state.surface.responses.delete(call, request.match_info["id"]))


async def cancel(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT + ".cancel", no_body)
    return _json(await state.surface.responses.cancel(call, request.match_info["id"]))


async def input_items(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT + ".input_items", no_body)
    query = _items_query(request.query)
    page = await state.surface.responses.input_items(call, request.match_info["id"], query)
    return _json(page)


async def input_tokens(request: web.Request) -> web.Response:
    state, call, body = await begin(request, ENDPOINT + ".input_tokens")
    return _json(await state.surface.responses.input_tokens(call, body))


def _items_query(query: Any) -> ItemsQuery:
    raw = query.get("limit")
    limit = DEFAULT_PAGE
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    return ItemsQuery(limit=limit, descending=order == "desc", after=query.get("after"))
