"""Google's Gemini API, inbound: ``POST /v1beta/models/{model}:{method}`` and
``GET /v1beta/models[/{model}]``, any channel.

``generateContent`` and ``streamGenerateContent?alt=sse`` run the gateway's
``GenerateContent`` operation (``gateway.generate_content``): relayed natively to Gemini
channels, translated for the others, metered as Chat Completions is. ``embedContent`` and
``batchEmbedContents`` run the embeddings operation of ``/v1/embeddings`` on the
translated body. ``countTokens`` is an estimate with the gateway's tokenizer: no upstream
is called and nothing is charged (as ``/v1/messages/count_tokens``). Keys come as
``x-goog-api-key`` or ``?key=`` (``body.bearer_secret``); errors take Google's shape,
``{"error": {"code", "message", "status"}}``, with the gateway's statuses: the handlers
raise, and ``api.errors``' middleware answers in that shape (every handler here claims its
request with ``answer_errors_as_google``, for the paths under ``/v1``).

``google-genai`` 3 speaks ``v1`` unless told otherwise, so the same paths are served under
``/v1``. There ``GET /v1/models`` is OpenAI's too: it answers in Gemini's shape when the
caller is a Google client (it sends ``x-goog-api-key``, ``?key=`` or ``x-goog-api-client``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from omnirelay.api import models
from omnirelay.api.begin import begin, begin_with, no_body, send
from omnirelay.api.errors import answer_errors_as_google
from omnirelay.gateway.generate_content import ENDPOINT
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.operation import Reply, StreamReply
from omnirelay.wire.chat import message_count, prompt_text
from omnirelay.wire.errors import InvalidRequest, ModelNotFound, NotFound
from omnirelay.wire.gemini_answers import embedding_values, model_object
from omnirelay.wire.gemini_inbound import batch_embed_to_openai, embed_to_openai, get, to_openai

COUNT_TOKENS = "gemini.countTokens"
EMBED = "gemini.embedContent"
BATCH_EMBED = "gemini.batchEmbedContents"
Method = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def model_method(request: web.Request) -> web.StreamResponse:
    """``POST .../models/{model}:{method}``; the model may hold ``/`` and ``:`` itself."""
    answer_errors_as_google(request)
    model, _, name = request.match_info["target"].rpartition(":")
    method = METHODS.get(name)
    if method is None or not model:
        raise NotFound(
            f"'{name}' is not a method this gateway serves; it serves {', '.join(METHODS)}."
        )
    return await method(request, model.removeprefix("models/"))


async def _generate(request: web.Request, model: str) -> web.StreamResponse:
    state, call, body = await begin(request, ENDPOINT)
    return await send(request, await state.surface.gemini.create(call, model, body, False))


async def _stream(request: web.Request, model: str) -> web.StreamResponse:
    state, call, body = await begin(request, ENDPOINT)
    if request.query.get("alt") != "sse":
        raise InvalidRequest(
            "streamGenerateContent is served as server-sent events: add ?alt=sse.", param="alt"
        )
    return await send(request, await state.surface.gemini.create(call, model, body, True))


async def _count_tokens(request: web.Request, model: str) -> web.StreamResponse:
    state, call, body = await begin(request, COUNT_TOKENS)
    inner = get(body, "generateContentRequest")
    canonical = to_openai(model, inner if isinstance(inner, dict) else body, False).body
    KeyCache.authorize_model(call.key, model)
    count = state.tokens.count_prompt(model, prompt_text(canonical), message_count(canonical))
    return _json({"totalTokens": count})


async def _embed(request: web.Request, model: str) -> web.StreamResponse:
    state, call, body = await begin(request, EMBED)
    data = _answer(await state.surface.embeddings.create(call, embed_to_openai(model, body)))
    values = embedding_values(data)
    return _json({"embedding": values[0] if values else {"values": []}})


async def _batch_embed(request: web.Request, model: str) -> web.StreamResponse:
    state, call, body = await begin(request, BATCH_EMBED)
    embeddings = batch_embed_to_openai(model, body)
    data = _answer(await state.surface.embeddings.create(call, embeddings))
    return _json({"embeddings": embedding_values(data)})


def _answer(result: Reply | StreamReply) -> dict[str, Any]:
    assert isinstance(result, Reply)  # embeddings never stream
    data = orjson.loads(result.body)
    return data if isinstance(data, dict) else {}


METHODS: dict[str, Method] = {
    "generateContent": _generate,
    "streamGenerateContent": _stream,
    "countTokens": _count_tokens,
    "embedContent": _embed,
    "batchEmbedContents": _batch_embed,
}


# -- models --------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.StreamResponse:
    answer_errors_as_google(request)
    state, call, _ = await begin_with(request, models.ENDPOINT, no_body)
    return _json({"models": [model_object(m) for m in models.visible_models(state, call.key)]})


async def get_model(request: web.Request) -> web.StreamResponse:
    answer_errors_as_google(request)
    model = request.match_info["model"].removeprefix("models/")
    state, call, _ = await begin_with(request, models.ENDPOINT, no_body)
    if model not in models.visible_models(state, call.key):
        raise ModelNotFound(f"models/{model} is not found, or this key may not use it.")
    return _json(model_object(model))


def google_client(request: web.Request) -> bool:
    headers = request.headers
    return "x-goog-api-key" in headers or "x-goog-api-client" in headers or "key" in request.query


async def list_models_either(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models``: OpenAI's list, or Gemini's for a Google client."""
    if google_client(request):
        return await list_models(request)
    return await models.list_models(request)


async def get_model_either(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models/{model}``: OpenAI's model, or Gemini's for a Google client."""
    if google_client(request):
        return await get_model(request)
    return await models.get_model(request)
