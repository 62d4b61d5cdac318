"""Gemini's ``generateContent`` (and ``streamGenerateContent``) as an operation of the
pipeline: relayed natively to Gemini channels, translated for every other channel.

The request is read once into the canonical chat body (``wire.gemini_inbound``), and
everything routes share is Chat Completions' own: the checks, the model, the hold
(``Chat.operation``), the prompt count that checks an upstream's usage, the pipeline that
authorizes, admits, fails over and settles. Only the attempt looks at the route:

- A channel whose dialect is ``generateContent`` (``GenerateContentProvider``) gets the
  client's body as it came, to the channel's model. Nothing is lost to a round trip through
  another shape (``safetySettings``, ``cachedContent``, ``googleSearch``, thought
  signatures, fields this gateway does not know yet), and the answer goes back as Gemini
  wrote it. It is metered by reading the same answer through the provider's own decoder
  (``chat_response``, ``stream_translator``), exactly as a Chat Completions call to that
  channel is, so the charge is the same. A channel with ``body_overrides`` takes the
  translated way, since its overrides are written in the canonical shape.
- Any other channel runs Chat's attempt on the canonical body; the answer is rendered in
  Gemini's shape (``wire.gemini_answers``; a stream through :class:`Rendered` with
  ``wire.gemini_events``), so its metering is Chat's by construction. A request that only a
  Gemini channel can serve is refused there (400) and says why.

Choosing per attempt, inside one operation, keeps failover whole: a call may fail on a
Gemini channel and be served by an OpenAI one, or the other way round, and the client sees
one dialect either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.chat import Chat, charged_usage
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.operation import Attempt, Charged, Deferred, Reply, Streaming, StreamReply
from omnirelay.gateway.rendered import Rendered
from omnirelay.gateway.requests import ChatRequest, check_chat_request
from omnirelay.gateway.token_stream import TokenStream, chat_prompt, output_tally
from omnirelay.providers.operations import GenerateContentProvider
from omnirelay.wire import sse
from omnirelay.wire.chat import usage_object
from omnirelay.wire.errors import GatewayError, InvalidRequest
from omnirelay.wire.gemini_answers import error_body, to_gemini, usage_metadata
from omnirelay.wire.gemini_events import GeminiEvents, frame
from omnirelay.wire.gemini_inbound import Inbound, reasoning_fields, to_openai

ENDPOINT = "gemini.generateContent"


class GenerateContent:
    def __init__(self, kit: Kit, chat: Chat) -> None:
        self._kit = kit
        self._chat = chat

    async def create(
        self, call: Call, model: str, body: dict[str, Any], stream: bool
    ) -> Reply | StreamReply:
        inbound = to_openai(model, body, stream)
        request = check_chat_request(inbound.body)
        translated = self._chat.operation(call, inbound.body, request)

        async def attempt(attempt: Attempt) -> Charged | Streaming:
            route = attempt.route
            provider = self._kit.providers.provider(route.channel.type)
            if isinstance(provider, GenerateContentProvider) and not route.body_overrides:
                return await self._native(attempt, provider, body, inbound.body, request)
            _check_translatable(inbound, route.channel.type)
            extra = reasoning_fields(inbound.thinking, route.channel.type, request.max_output)
            operation = (
                self._chat.operation(call, {**inbound.body, **extra}, request)
                if extra
                else translated
            )
            result = await operation.attempt(attempt)
            if isinstance(result, Deferred):  # chat answers or streams; it never defers
                raise TypeError("a chat attempt deferred its charge")
            return _in_gemini_shape(result, model)

        return await self._kit.pipeline.run(call, dataclasses.replace(translated, attempt=attempt))

    async def _native(
        self,
        attempt: Attempt,
        provider: GenerateContentProvider,
        body: dict[str, Any],
        canonical: dict[str, Any],
        request: ChatRequest,
    ) -> Charged | Streaming:
        kit, route = self._kit, attempt.route
        sent = provider.generate_content_request(
            route.endpoint, body, route.upstream_model, request.stream
        )
        response = await kit.upstream.send(provider, sent, route)
        prompt = chat_prompt(kit.tokens, request.model, canonical)
        if request.stream:
            translator = provider.stream_translator(request.model)
            tally = output_tally(kit.tokens, attempt, request, prompt)
            source = NativeStream(response, translator, tally, attempt, prompt, request)
            return await kit.upstream.open(source, route)
        payload = await kit.upstream.read(attempt.call, response)
        data = provider.chat_response(payload)  # the answer read to meter it; not JSON: 502
        usage = charged_usage(kit.tokens, attempt, data, request, prompt)
        answer = orjson.loads(payload)
        if usage.counted_locally:
            answer["usageMetadata"] = usage_metadata(
                usage_object(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
            )
        served = data.get("model")
        return Charged(
            Reply(orjson.dumps(answer)),
            attempt.quote.cost(usage),
            usage,
            served if isinstance(served, str) else None,
        )


def _check_translatable(inbound: Inbound, channel_type: str) -> None:
    if inbound.native_only:
        where = ", ".join(inbound.native_only[:3])
        raise InvalidRequest(
            f"{where}: only a Gemini channel can serve this, and this call went to a channel "
            f"of type '{channel_type}'. Leave it out, or use a model served by Gemini.",
            param=inbound.native_only[0],
        )


def _in_gemini_shape(result: Charged | Streaming, model: str) -> Charged | Streaming:
    if isinstance(result, Streaming):
        events = GeminiEvents(model)
        failure = lambda error: events.error(error.status, error.message)  # noqa: E731
        return Rendered(result.source, events, failure).over(result)
    answer = to_gemini(orjson.loads(result.reply.body), model)
    return dataclasses.replace(result, reply=Reply(orjson.dumps(answer)))


class NativeStream(TokenStream):
    """Gemini's own events, relayed as they came, metered through the dialect's translator.

    Each event is read into canonical chunks only to count and cut (``TokenStream._take``,
    into a sink the client never sees); the client gets the event itself, or nothing when
    it is not a JSON object. The stream has ended once every candidate it opened has a
    ``finishReason``: the charge is known then, before the last event leaves (strict
    settlement), and that event's ``usageMetadata`` tells the usage charged when the
    gateway did not take the upstream's.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._seen: set[int] = set()  # the candidates opened, by index
        self._done: set[int] = set()  # those with a finishReason

    async def _events(self) -> AsyncIterator[bytes]:
        try:
            async for batch in self._response.event_batches():
                out: list[bytes] = []
                for event in batch:
                    data = sse.event_data(event)
                    if data is None or self.finished:
                        continue
                    relayed = self._relay(data)
                    if self._failure is not None:
                        break
                    if relayed:
                        out.append(relayed)
                if out:
                    yield b"".join(out)
                if self._failure is not None:
                    raise self._failure
        except GatewayError:
            if self.finished:
                return
            raise
        finally:
            self._report_garbage()
        if not self.finished:
            self._end()  # the upstream stopped before every candidate had finished

    def _relay(self, data: bytes) -> bytes:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if type(event) is not dict:
            self._garbage += 1
            return b""
        assert self._translator is not None
        sink: list[bytes] = []
        for payload in self._translator.feed(data):
            self._take(payload, sink)
        if self._failure is not None:
            return b""
        if not self._ends(event):
            return sse.encode(data)
        self._end()  # takes the usage the translator holds, and ends the stream
        usage = self.usage()
        if usage.counted_locally:
            event["usageMetadata"] = usage_metadata(
                usage_object(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
            )
            return frame(event)
        return sse.encode(data)

    def _ends(self, event: dict[str, Any]) -> bool:
        candidates = event.get("candidates")
        if not candidates:
            feedback = event.get("promptFeedback")
            return isinstance(feedback, dict) and bool(feedback.get("blockReason"))
        for position, candidate in enumerate(candidates if type(candidates) is list else ()):
            if type(candidate) is dict:
                index = candidate.get("index", position)
                self._seen.add(index)
                if candidate.get("finishReason"):
                    self._done.add(index)
        return bool(self._seen) and self._seen <= self._done

    def failure_tail(self, error: GatewayError) -> bytes:
        return frame(error_body(error.status, error.message))
