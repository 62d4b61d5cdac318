"""POST /console/api/chat: the playground's call, made in-process for the session's key.

The browser never holds a key. A key holder's call is charged to their own key (and comes
from an address the key allows: resolving the session checks it); an operator names the
key to charge as ``key_id``.
The call runs through the same pipeline as ``POST /v1/chat/completions`` (routing,
failover, limits, metering) under the endpoint name ``console.chat.completions``, which is
what marks its log row as a console call.

The answer always streams, as server-sent events: the chat chunks as they arrive, then one
``event: charged`` with what the call's log row says it cost (``request_id``, tokens,
``cost_nano``, ``status``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from omnirelay.api.admin_auth import principal
from omnirelay.api.begin import STREAM_HEADERS
from omnirelay.api.body import read_json
from omnirelay.api.errors import REQUEST_ID_HEADER, REQUEST_ID_KEY
from omnirelay.api.state import AppState, state_of
from omnirelay.gateway.calls import Call
from omnirelay.gateway.keys import KeyState
from omnirelay.gateway.operation import Reply
from omnirelay.wire.errors import InvalidRequest, NotFound

ENDPOINT = "console.chat.completions"
FIELDS = (
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "response_format",
    "seed",
    "stop",
)
"""What the playground may send; the gateway sets ``stream`` itself."""
CHARGED_COLUMNS = (
    "request_id",
    "model",
    "served_model",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nano",
    "latency_ms",
    "ttfb_ms",
    "error",
)


def _key(state: AppState, key_id: int | None, own: int | None) -> KeyState:
    """The key to charge: a key holder's own, or the one an operator named."""
    wanted = own if own is not None else key_id
    if wanted is None:
        raise InvalidRequest("Pick the key to charge: 'key_id'.", param="key_id")
    if own is not None and key_id is not None and key_id != own:
        raise InvalidRequest("A key holder's calls are charged to their own key.", param="key_id")
    key = state.keys.get(wanted)
    if key is None:
        raise NotFound(f"No key has id {wanted}.", param="key_id")
    return key


async def chat(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    caller = await principal(request)
    body = await read_json(request, state.settings.max_body_bytes)
    key_id = body.get("key_id")
    if key_id is not None and (not isinstance(key_id, int) or isinstance(key_id, bool)):
        raise InvalidRequest("'key_id' must be an integer.", param="key_id")
    key = _key(state, key_id, caller.key_id)
    sent: dict[str, Any] = {name: body[name] for name in FIELDS if name in body}
    sent["stream"] = True
    sent["stream_options"] = {"include_usage": True}
    call = Call.begin(
        request[REQUEST_ID_KEY],
        key,
        ENDPOINT,
        body_bytes=len(orjson.dumps(sent)),
        client_ip=request.remote,
    )
    result = await state.surface.chat.create(call, sent)
    stream = web.StreamResponse(
        headers={
            **STREAM_HEADERS,
            "Content-Type": "text/event-stream; charset=utf-8",
            REQUEST_ID_HEADER: call.request_id,
        }
    )
    await stream.prepare(request)
    try:
        if isinstance(result, Reply):
            await stream.write(b"data: " + result.body + b"\n\n")
        else:
            try:
                if result.first:
                    await stream.write(result.first)
                async for chunk in result.rest:
                    await stream.write(chunk)
            finally:
                await result.rest.aclose()
        charged = await _charged(state, call.request_id)
        await stream.write(b"event: charged\ndata: " + orjson.dumps(charged) + b"\n\n")
        await stream.write_eof()
    except (ConnectionResetError, ClientConnectionResetError):
        pass  # the page went away; closing the stream cancelled the upstream call
    return stream


async def _charged(state: AppState, request_id: str) -> dict[str, Any]:
    """What the call's log row says, once the log writer has committed it."""
    await state.logs.commit_submitted()
    row = await state.store.logs.by_request_id(request_id) or {"request_id": request_id}
    return {name: row.get(name) for name in CHARGED_COLUMNS}
