"""POST /v1/embeddings and /v1/moderations: billed by the tokens of their input."""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.op_checks import one_of, required, required_str
from omnirelay.gateway.operations import Charged, Operation, OperationRunner, Reply, StreamReply
from omnirelay.gateway.pricing import Quote
from omnirelay.gateway.routing import Route
from omnirelay.providers.openai_ops import json_object
from omnirelay.providers.operations import EmbeddingsProvider, ModerationsProvider
from omnirelay.wire.errors import InvalidType, UpstreamError
from omnirelay.wire.usage import Usage

EMBEDDINGS = "embeddings"
MODERATIONS = "moderations"
ENCODING_FORMATS = ("float", "base64")
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


class Embeddings:
    def __init__(self, runner: OperationRunner) -> None:
        self._runner = runner

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        model = required_str(body, "model")
        required(body, "input")
        one_of(body.get("encoding_format"), ENCODING_FORMATS, "encoding_format")
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(route: Route, quote: Quote) -> Charged:
            return await self._attempt(call, body, route, quote)

        return await self._runner.run(
            call, Operation(model, lambda q: q.estimate(size, 0), attempt)
        )

    async def _attempt(
        self, call: Call, body: dict[str, Any], route: Route, quote: Quote
    ) -> Charged:
        runner = self._runner
        provider = runner.providers.provider(route.channel.type)
        if not isinstance(provider, EmbeddingsProvider):
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve embeddings.")
        body = {**body, **route.body_overrides} if route.body_overrides else body
        request = provider.embeddings_request(route.endpoint, body, route.upstream_model)
        payload = await runner.read(call, await runner.send(provider, request, route))
        data = provider.embeddings_response(payload, body)
        usage = Usage.from_openai(data.get("usage"))
        if usage is None or not usage.prompt_tokens:
            tokens = input_tokens(runner, str(call.model), body.get("input"))
            usage = Usage(prompt_tokens=tokens, counted_locally=True)
            data["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        served = data.get("model")
        reply = Reply(orjson.dumps(data))
        return Charged(reply, quote.cost(usage), usage, served if isinstance(served, str) else None)


class Moderations:
    """Text and image inputs; charged for the input's text tokens at the model's price."""

    def __init__(self, runner: OperationRunner) -> None:
        self._runner = runner

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        required(body, "input")
        model = body.get("model") or DEFAULT_MODERATION_MODEL
        if not isinstance(model, str):
            raise InvalidType("Invalid type for 'model': expected a string.", param="model")
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(route: Route, quote: Quote) -> Charged:
            return await self._attempt(call, body, route, quote)

        return await self._runner.run(
            call, Operation(model, lambda q: q.estimate(size, 0), attempt)
        )

    async def _attempt(
        self, call: Call, body: dict[str, Any], route: Route, quote: Quote
    ) -> Charged:
        runner = self._runner
        provider = runner.providers.provider(route.channel.type)
        if not isinstance(provider, ModerationsProvider):
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve moderations.")
        body = {**body, **route.body_overrides} if route.body_overrides else body
        request = provider.moderations_request(route.endpoint, body, route.upstream_model)
        payload = await runner.read(call, await runner.send(provider, request, route))
        data = json_object(payload, "results")
        tokens = input_tokens(runner, str(call.model), body.get("input"))
        usage = Usage(prompt_tokens=tokens, counted_locally=True)
        served = data.get("model")
        served_model = served if isinstance(served, str) else None
        return Charged(Reply(payload), quote.cost(usage), usage, served_model)


def input_tokens(runner: OperationRunner, model: str, value: Any) -> int:
    """The tokens of an ``input``: text, token arrays, or moderation parts (text only)."""
    if isinstance(value, str):
        return runner.tokens.count(model, value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, int):
            total += 1
        elif isinstance(item, str):
            total += runner.tokens.count(model, item)
        elif isinstance(item, list):
            total += len(item)
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            total += runner.tokens.count(model, item["text"])
    return total
