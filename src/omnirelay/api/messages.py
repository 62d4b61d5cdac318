"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, any upstream.

The request becomes the canonical chat body and goes through the same relay as
/v1/chat/completions (routing, failover, metering); the answer is told back as an Anthropic
``message`` or event stream. Errors take Anthropic's shape, with the same statuses.
Keys are accepted as ``x-api-key`` (Anthropic's style) or ``Authorization: Bearer``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, send
from omnirelay.api.errors import REQUEST_ID_HEADER, REQUEST_ID_KEY
from omnirelay.api.state import AppState
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.operation import Reply
from omnirelay.wire import anthropic as shared
from omnirelay.wire.anthropic_events import MessageEvents
from omnirelay.wire.anthropic_inbound import to_message, to_openai
from omnirelay.wire.chat import message_count, prompt_text
from omnirelay.wire.errors import GatewayError

ENDPOINT = "messages"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def error_response(error: GatewayError, request_id: str) -> web.Response:
    headers = {REQUEST_ID_HEADER: request_id, "request-id": request_id}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(int(error.retry_after + 0.999), 1))
    body = shared.error_body(error.status, error.message)
    body["request_id"] = request_id
    return web.Response(
        status=error.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


async def messages(request: web.Request) -> web.StreamResponse:
    request_id = request[REQUEST_ID_KEY]
    try:
        state, call, raw = await begin(request, ENDPOINT)
        body = to_openai(raw)
        result = await state.surface.chat.create(call, body)
    except GatewayError as error:
        return error_response(error, request_id)
    if isinstance(result, Reply):
        message = to_message(orjson.loads(result.body), body["model"])
        return web.Response(
            body=orjson.dumps(message),
            content_type="application/json",
            headers={"request-id": request_id},
        )
    retell = MessageEvents(body["model"], _prompt_tokens(state, body))
    return await send(request, result, headers={"request-id": request_id}, retell=retell)


async def count_tokens(request: web.Request) -> web.Response:
    """An estimate with OpenAI's tokenizer: no upstream is called and nothing is charged."""
    request_id = request[REQUEST_ID_KEY]
    try:
        state, call, raw = await begin(request, ENDPOINT + ".count_tokens")
        body = to_openai({"max_tokens": 1, **raw})
        KeyCache.authorize_model(call.key, body["model"])
    except GatewayError as error:
        return error_response(error, request_id)
    payload: dict[str, Any] = {"input_tokens": _prompt_tokens(state, body)}
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def _prompt_tokens(state: AppState, body: dict[str, Any]) -> int:
    """The canonical body's prompt, counted with the gateway's tokenizer."""
    return state.tokens.count_prompt(body["model"], prompt_text(body), message_count(body))
