"""POST /v1/completions, the legacy text completions: billed by tokens, streamed or not.

A stream is relayed and metered like a chat stream (``token_stream``), reading each
choice's ``text``. The gateway asks the upstream for the usage chunk, and keeps it from a
client that did not ask for it; without upstream usage, the text relayed is counted.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.op_checks import (
    optional_bool,
    optional_int,
    optional_object,
    required,
    required_str,
)
from omnirelay.gateway.operation import Attempt, Charged, Operation, Reply, Streaming, StreamReply
from omnirelay.gateway.requests import ChatRequest
from omnirelay.gateway.token_stream import Lazy, TokenStream, output_tally
from omnirelay.gateway.usage_check import Counts, trusted_usage
from omnirelay.providers.openai_ops import json_object
from omnirelay.providers.operations import CompletionsProvider
from omnirelay.wire.chat import usage_object
from omnirelay.wire.tokens import TokenCounter, utf8_length

ENDPOINT = "completions"
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy API


class CompletionStream(TokenStream):
    OBJECT = "text_completion"

    def _meter_choices(self, choices: Any) -> None:
        for choice in choices if type(choices) is list else ():
            if type(choice) is not dict:
                continue
            text = choice.get("text")
            if text and type(text) is str:
                self._tally.add(text)
            reason = choice.get("finish_reason")
            if reason:
                self._ended_choice = True
                self._attempt.call.finish_reason = reason


class Completions:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        return await self._kit.pipeline.run(call, self.operation(call, body))

    def operation(self, call: Call, body: dict[str, Any]) -> Operation:
        model = required_str(body, "model")
        prompt = required(body, "prompt")
        stream = optional_bool(body, "stream")
        wants_usage = optional_object(body, "stream_options").get("include_usage") is True
        asked = optional_int(body, "max_tokens", 0)
        choices = max(optional_int(body, "n", 1), optional_int(body, "best_of", 1))
        request = ChatRequest(model, stream, wants_usage, asked or None, choices)
        output = (asked or DEFAULT_MAX_TOKENS) * choices
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(attempt: Attempt) -> Charged | Streaming:
            return await self._attempt(attempt, body, prompt, request)

        return Operation(model, lambda quote: quote.estimate(size, output), attempt, stream)

    async def _attempt(
        self, attempt: Attempt, body: dict[str, Any], prompt: Any, request: ChatRequest
    ) -> Charged | Streaming:
        kit, route = self._kit, attempt.route
        provider = kit.provider(route, CompletionsProvider, "completions")
        sent = {**body, **route.body_overrides} if route.body_overrides else body
        upstream_request = provider.completions_request(
            route.endpoint, sent, route.upstream_model, request.stream
        )
        response = await kit.upstream.send(provider, upstream_request, route)
        prompt_tokens = Lazy(lambda: prompt_count(kit.tokens, request.model, prompt))
        if request.stream:
            tally = output_tally(kit.tokens, attempt, request, prompt_tokens)
            source = CompletionStream(response, None, tally, attempt, prompt_tokens, request)
            return await kit.upstream.open(source, route)
        payload = await kit.upstream.read(attempt.call, response)
        data = json_object(payload, "choices")
        text = "".join(c.get("text") or "" for c in data["choices"] or () if isinstance(c, dict))
        counts = Counts(
            prompt=prompt_tokens,
            completion=lambda: kit.tokens.count(request.model, text),
            completion_bytes=utf8_length(text),
            output_cap=request.output_cap,
        )
        usage = trusted_usage(data.get("usage"), counts, route.channel_id)
        reply = Reply(payload)
        if usage.counted_locally:
            data["usage"] = usage_object(usage.prompt_tokens, usage.completion_tokens, 0)
            reply = Reply(orjson.dumps(data))
        served = data.get("model")
        served_model = served if isinstance(served, str) else None
        return Charged(reply, attempt.quote.cost(usage), usage, served_model)


def prompt_count(tokens: TokenCounter, model: str, prompt: Any) -> int:
    """The tokens of a legacy ``prompt``: text, or arrays of token ids."""
    prompts = prompt if isinstance(prompt, list) else [prompt]
    text = "".join(p for p in prompts if isinstance(p, str))
    ids = sum(len(p) for p in prompts if isinstance(p, list))
    return ids + sum(1 for p in prompts if isinstance(p, int)) + tokens.count(model, text)
