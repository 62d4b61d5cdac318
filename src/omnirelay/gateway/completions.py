"""POST /v1/completions, the legacy text completions: billed by tokens, streamed or not.

A stream's bytes pass through event by event; only events that may carry usage are
parsed. The gateway asks the upstream for the usage chunk, and keeps it from a client that
did not ask for it. Without upstream usage, the text relayed so far is counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.chat import DONE_EVENT
from omnirelay.gateway.op_checks import (
    optional_bool,
    optional_int,
    optional_object,
    required,
    required_str,
)
from omnirelay.gateway.operations import (
    Charged,
    Operation,
    OperationRunner,
    Reply,
    Streaming,
    StreamReply,
)
from omnirelay.gateway.pricing import Quote
from omnirelay.gateway.routing import Route
from omnirelay.providers.openai_ops import json_object
from omnirelay.providers.operations import CompletionsProvider
from omnirelay.wire import sse
from omnirelay.wire.errors import GatewayError, UpstreamError
from omnirelay.wire.usage import Usage

ENDPOINT = "completions"
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy API


class _CompletionMeter:
    def __init__(self, runner: OperationRunner, model: str, prompt: Any, quote: Quote) -> None:
        self._runner, self._model, self._prompt, self._quote = runner, model, prompt, quote
        self.usage: Usage | None = None
        self.text: list[str] = []

    def feed(self, chunk: bytes) -> None:
        pass  # events are read as they are parsed in ``events``

    def charge(self) -> tuple[int, Usage]:
        usage = self.usage
        if usage is None:
            if not self.text:
                return 0, Usage()
            usage = count(self._runner, self._model, self._prompt, "".join(self.text))
        return self._quote.cost(usage), usage

    def failure_tail(self, error: GatewayError) -> bytes:
        return sse.encode(orjson.dumps(error.body()))

    async def events(
        self, response: aiohttp.ClientResponse, wants_usage: bool
    ) -> AsyncIterator[bytes]:
        async for event in sse.iter_events(response.content.iter_any()):
            data = sse.event_data(event)
            if data is None:
                continue
            if data == sse.DONE:
                yield DONE_EVENT
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                chunk = None
            if isinstance(chunk, dict):
                for choice in chunk.get("choices") or ():
                    if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                        self.text.append(choice["text"])
                found = Usage.from_openai(chunk.get("usage"))
                if found is not None:
                    self.usage = found
                    if not chunk.get("choices") and not wants_usage:
                        continue
            yield sse.encode(data)


class Completions:
    def __init__(self, runner: OperationRunner) -> None:
        self._runner = runner

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        model = required_str(body, "model")
        prompt = required(body, "prompt")
        stream = optional_bool(body, "stream")
        wants_usage = optional_object(body, "stream_options").get("include_usage") is True
        output = optional_int(body, "max_tokens", DEFAULT_MAX_TOKENS)
        output *= max(optional_int(body, "n", 1), optional_int(body, "best_of", 1))
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(route: Route, quote: Quote) -> Charged | Streaming:
            runner = self._runner
            provider = runner.providers.provider(route.channel.type)
            if not isinstance(provider, CompletionsProvider):
                raise UpstreamError(f"Channel type '{route.channel.type}' has no completions.")
            sent = {**body, **route.body_overrides} if route.body_overrides else body
            request = provider.completions_request(
                route.endpoint, sent, route.upstream_model, stream
            )
            response = await runner.send(provider, request, route)
            if stream:
                meter = _CompletionMeter(runner, model, prompt, quote)
                events = meter.events(response, wants_usage)
                return await runner.open_stream(response, events, route, meter)
            payload = await runner.read(call, response)
            data = json_object(payload, "choices")
            usage = Usage.from_openai(data.get("usage"))
            if usage is None:
                text = "".join(c.get("text") or "" for c in data["choices"] if isinstance(c, dict))
                usage = count(runner, model, prompt, text)
            served = data.get("model")
            served_model = served if isinstance(served, str) else None
            return Charged(Reply(payload), quote.cost(usage), usage, served_model)

        hold = lambda quote: quote.estimate(size, output)  # noqa: E731
        return await self._runner.run(call, Operation(model, hold, attempt, stream=stream))


def count(runner: OperationRunner, model: str, prompt: Any, completion: str) -> Usage:
    prompts = prompt if isinstance(prompt, list) else [prompt]
    text = "".join(p for p in prompts if isinstance(p, str))
    tokens = sum(len(p) for p in prompts if isinstance(p, list)) + sum(
        1 for p in prompts if isinstance(p, int)
    )
    return Usage(
        prompt_tokens=tokens + runner.tokens.count(model, text),
        completion_tokens=runner.tokens.count(model, completion),
        counted_locally=True,
    )
