"""POST /v1/embeddings and /v1/moderations: billed by the tokens of their input."""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.op_checks import json_int, one_of, required, required_str
from omnirelay.gateway.operation import Attempt, Charged, Operation, Reply, StreamReply
from omnirelay.gateway.token_stream import Lazy
from omnirelay.gateway.usage_check import Counts, trusted_usage
from omnirelay.providers.openai_ops import json_object
from omnirelay.providers.operations import EmbeddingsProvider, ModerationsProvider
from omnirelay.wire.errors import InvalidType
from omnirelay.wire.tokens import TokenCounter
from omnirelay.wire.usage import Usage

EMBEDDINGS = "embeddings"
MODERATIONS = "moderations"
ENCODING_FORMATS = ("float", "base64")
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


class Embeddings:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        return await self._kit.pipeline.run(call, self.operation(call, body))

    def operation(self, call: Call, body: dict[str, Any]) -> Operation:
        model = required_str(body, "model")
        required(body, "input")
        one_of(body.get("encoding_format"), ENCODING_FORMATS, "encoding_format")
        json_int(body, "dimensions")
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(attempt: Attempt) -> Charged:
            return await self._attempt(attempt, body, model)

        return Operation(model, lambda quote: quote.estimate(size, 0), attempt)

    async def _attempt(self, attempt: Attempt, body: dict[str, Any], model: str) -> Charged:
        kit, route = self._kit, attempt.route
        provider = kit.provider(route, EmbeddingsProvider, "embeddings")
        sent = {**body, **route.body_overrides} if route.body_overrides else body
        request = provider.embeddings_request(route.endpoint, sent, route.upstream_model)
        response = await kit.upstream.send(provider, request, route)
        data = provider.embeddings_response(await kit.upstream.read(attempt.call, response), sent)
        tokens = Lazy(lambda: input_tokens(kit.tokens, model, body.get("input")))
        reported = data.get("usage")
        if isinstance(reported, dict) and reported.get("prompt_tokens"):
            counts = Counts(prompt=tokens, completion=lambda: 0, completion_bytes=0)
            usage = trusted_usage(reported, counts, route.channel_id)
        else:
            usage = Usage(prompt_tokens=tokens(), counted_locally=True)
        if usage.counted_locally:
            data["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "total_tokens": usage.total_tokens,
            }
        served = data.get("model")
        reply = Reply(orjson.dumps(data))
        cost = attempt.quote.cost(usage)
        return Charged(reply, cost, usage, served if isinstance(served, str) else None)


class Moderations:
    """Text and image inputs; charged for the input's text tokens at the model's price."""

    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        return await self._kit.pipeline.run(call, self.operation(call, body))

    def operation(self, call: Call, body: dict[str, Any]) -> Operation:
        required(body, "input")
        model = body.get("model") or DEFAULT_MODERATION_MODEL
        if not isinstance(model, str):
            raise InvalidType("Invalid type for 'model': expected a string.", param="model")
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(attempt: Attempt) -> Charged:
            return await self._attempt(attempt, body, model)

        return Operation(model, lambda quote: quote.estimate(size, 0), attempt)

    async def _attempt(self, attempt: Attempt, body: dict[str, Any], model: str) -> Charged:
        kit, route = self._kit, attempt.route
        provider = kit.provider(route, ModerationsProvider, "moderations")
        sent = {**body, **route.body_overrides} if route.body_overrides else body
        request = provider.moderations_request(route.endpoint, sent, route.upstream_model)
        response = await kit.upstream.send(provider, request, route)
        payload = await kit.upstream.read(attempt.call, response)
        data = json_object(payload, "results")
        usage = Usage(
            prompt_tokens=input_tokens(kit.tokens, model, body.get("input")),
            counted_locally=True,
        )
        served = data.get("model")
        served_model = served if isinstance(served, str) else None
        return Charged(Reply(payload), attempt.quote.cost(usage), usage, served_model)


def input_tokens(tokens: TokenCounter, model: str, value: Any) -> int:
    """The tokens of an ``input``: text, token arrays, or moderation parts (text only)."""
    if isinstance(value, str):
        return tokens.count(model, value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, int):
            total += 1
        elif isinstance(item, str):
            total += tokens.count(model, item)
        elif isinstance(item, list):
            total += len(item)
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            total += tokens.count(model, item["text"])
    return total
