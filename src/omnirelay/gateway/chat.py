"""POST /v1/chat/completions as an operation of the pipeline: hold, attempt, meter.

The hold prices every body byte as a prompt token plus the output cap (the request's
``max_tokens`` x ``n``, or ``hold_output_tokens``). A complete answer is completed to the
spec's required shape and charged from its usage, checked against the gateway's own counts
(``usage_check``). A stream is relayed by :class:`~omnirelay.gateway.token_stream.TokenStream`.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.fetch import ImageFetcher, inline_images, needs_inline_images
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.operation import Attempt, Charged, Operation, Reply, Streaming, StreamReply
from omnirelay.gateway.requests import ChatRequest, check_chat_request
from omnirelay.gateway.token_stream import Lazy, TokenStream, chat_prompt, output_tally
from omnirelay.gateway.usage_check import Counts, trusted_usage
from omnirelay.wire.chat import complete_response, response_text, usage_object
from omnirelay.wire.errors import UpstreamError
from omnirelay.wire.tokens import TokenCounter, utf8_length
from omnirelay.wire.usage import Usage

ENDPOINT = "chat.completions"


class Chat:
    def __init__(
        self,
        kit: Kit,
        *,
        fingerprint: str,
        hold_output_tokens: int = 4096,
        fetcher: ImageFetcher | None = None,
    ) -> None:
        self._kit = kit
        self._fingerprint = fingerprint
        self._hold_output_tokens = hold_output_tokens
        self._fetcher = fetcher

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        request = check_chat_request(body)
        return await self._kit.pipeline.run(call, self.operation(call, body, request))

    def operation(self, call: Call, body: dict[str, Any], request: ChatRequest) -> Operation:
        output = (request.max_output or self._hold_output_tokens) * request.choices
        size = call.body_bytes or len(orjson.dumps(body))

        async def attempt(attempt: Attempt) -> Charged | Streaming:
            return await self.attempt(attempt, body, request)

        return Operation(
            request.model, lambda quote: quote.estimate(size, output), attempt, request.stream
        )

    async def attempt(
        self, attempt: Attempt, body: dict[str, Any], request: ChatRequest
    ) -> Charged | Streaming:
        """One attempt of a chat call on its route (also a translated dialect's, such as
        the Responses API's on a channel that speaks only chat)."""
        route, kit = attempt.route, self._kit
        provider = kit.providers.chat(route.channel.type)
        if provider is None:
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve chat.")
        sent = {**body, **route.body_overrides} if route.body_overrides else body
        if self._fetcher is not None and needs_inline_images(provider, route.endpoint):
            sent = await inline_images(sent, self._fetcher)
        upstream_request = provider.chat_request(
            route.endpoint, sent, route.upstream_model, request.stream
        )
        response = await kit.upstream.send(provider, upstream_request, route)
        prompt = chat_prompt(kit.tokens, request.model, body)
        if request.stream:
            source = TokenStream(
                response,
                provider.stream_translator(request.model),
                output_tally(kit.tokens, attempt, request, prompt),
                attempt,
                prompt,
                request,
            )
            return await kit.upstream.open(source, route)
        payload = await kit.upstream.read(attempt.call, response)
        return self._answer(attempt, provider.chat_response(payload), request, prompt)

    def _answer(
        self, attempt: Attempt, data: dict[str, Any], request: ChatRequest, prompt: Lazy
    ) -> Charged:
        served = data.get("model")
        usage = charged_usage(self._kit.tokens, attempt, data, request, prompt)
        if usage.counted_locally:
            data["usage"] = usage_object(
                usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
            )
        complete_response(data, self._fingerprint)
        choices = data.get("choices")
        if choices and isinstance(choices[0], dict):
            attempt.call.finish_reason = choices[0].get("finish_reason")
        return Charged(
            Reply(orjson.dumps(data)),
            attempt.quote.cost(usage),
            usage,
            served if isinstance(served, str) else None,
        )


def charged_usage(
    tokens: TokenCounter,
    attempt: Attempt,
    data: dict[str, Any],
    request: ChatRequest,
    prompt: Lazy,
) -> Usage:
    """The usage a complete answer (in the canonical shape) is charged: the upstream's,
    checked against the gateway's own counts."""
    text = response_text(data)
    counts = Counts(
        prompt=prompt,
        completion=lambda: tokens.count(request.model, text),
        completion_bytes=utf8_length(text),
        output_cap=request.output_cap,
    )
    return trusted_usage(data.get("usage"), counts, attempt.route.channel_id)
