"""The chat completions relay: route with failover, call the upstream, meter, log.

Non-stream responses are completed to the spec's required shape. Streams are relayed
as they arrive: the bytes pass through, and only events that can carry usage are parsed.
The events of one upstream read leave in one write. A stream is answered once its first
event has arrived, so that until then a failure can still move on to another channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from omnirelay.gateway.attempts import AttemptLoop
from omnirelay.gateway.calls import STATUS_CLIENT_CLOSED, Call
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.pricing import PriceBook, Quote
from omnirelay.gateway.requests import ChatRequest, check_chat_request
from omnirelay.gateway.routing import Route
from omnirelay.gateway.upstream_io import STREAM_READ_ERRORS, error_of, first_of, read_body
from omnirelay.providers.base import ChatProvider, StreamTranslator
from omnirelay.providers.fetch import ImageFetcher, inline_images, needs_inline_images
from omnirelay.providers.http import UpstreamClient
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.store.counters import Ticket
from omnirelay.wire import sse
from omnirelay.wire.chat import (
    complete_response,
    generated_text,
    message_count,
    prompt_text,
    response_text,
    usage_object,
)
from omnirelay.wire.errors import (
    GatewayError,
    ModelNotPriced,
    UpstreamError,
    UpstreamTimeout,
)
from omnirelay.wire.tokens import TokenCounter
from omnirelay.wire.usage import Usage

ENDPOINT = "chat.completions"
DONE_EVENT = sse.encode(sse.DONE)


@dataclass(frozen=True, slots=True)
class JSONResult:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class StreamResult:
    """A stream whose first event has arrived; ``rest`` must be closed after use.

    ``first`` and each item of ``rest`` hold one or more whole encoded events.
    """

    first: bytes
    rest: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class _Answer:
    """A complete non-stream answer and what it costs."""

    json: JSONResult
    usage: Usage
    cost: int


@dataclass(frozen=True, slots=True)
class _Job:
    """What every attempt of one call shares."""

    call: Call
    request: ChatRequest
    body: dict[str, Any]
    quotes: dict[int, Quote]
    ticket: Ticket

    def quote(self, route: Route) -> Quote:
        quote = self.quotes.get(route.channel_id)
        if quote is None:
            # Moves on to a channel where the model has a price.
            raise UpstreamError(f"The model has no price on channel {route.channel_id}.")
        return quote


class ChatRelay:
    def __init__(
        self,
        *,
        attempts: AttemptLoop,
        prices: PriceBook,
        providers: ProviderRegistry,
        upstream: UpstreamClient,
        logs: LogWriter,
        meter: Meter,
        tokens: TokenCounter,
        fingerprint: str,
        hold_output_tokens: int = 4096,
        strict_settlement: bool = False,
        fetcher: ImageFetcher | None = None,
    ) -> None:
        self._attempts = attempts
        self._fetcher = fetcher
        self._meter = meter
        self._hold_output_tokens = hold_output_tokens
        self._strict = strict_settlement
        self._prices = prices
        self._providers = providers
        self._upstream = upstream
        self._logs = logs
        self._tokens = tokens
        self._fingerprint = fingerprint

    async def complete(self, call: Call, body: dict[str, Any]) -> JSONResult | StreamResult:
        stream = body.get("stream") is True
        try:
            request = check_chat_request(body)
            call.model = request.model
            return await self._relay(call, body, request)
        except GatewayError as error:
            self._logs.submit(call.log_row(status=error.status, stream=stream, error=error.message))
            raise
        except asyncio.CancelledError:
            # The client left before an answer started; the upstream call was dropped.
            row = call.log_row(status=STATUS_CLIENT_CLOSED, stream=stream, error=CANCELLED)
            self._logs.submit(row)
            raise

    async def _relay(
        self, call: Call, body: dict[str, Any], request: ChatRequest
    ) -> JSONResult | StreamResult:
        KeyCache.authorize_ip(call.key, call.client_ip)
        KeyCache.authorize_model(call.key, request.model)
        group = call.key.row.group_name
        quotes = {
            route.channel_id: quote
            for route in self._attempts.candidates(group, request.model)
            if (quote := self._prices.quote(request.model, route.channel_id, group)) is not None
        }
        if not quotes:
            raise ModelNotPriced(
                f"The model '{request.model}' has no price on this gateway, so it cannot be "
                "metered. Ask the operator to set one (omnirelay price set).",
                param="model",
            )
        hold = self._hold_estimate(call, body, quotes.values())
        ticket = await self._meter.admit(call.request_id, call.key, hold, time.time())
        job = _Job(call, request, body, quotes, ticket)
        try:
            done = await self._attempts.run(
                call, group, request.model, lambda route: self._attempt(job, route)
            )
        except BaseException:
            await self._meter.release(ticket)
            raise
        result = done.result
        if isinstance(result, _Answer):
            self._attempts.finish(done.route, request.model)
            row = call.log_row(status=200, stream=False, usage=result.usage, cost_nano=result.cost)
            self._logs.submit(row)
            await self._meter.settle(ticket, result.cost, result.usage.total_tokens, time.time())
            if self._strict:
                await self._logs.commit_submitted()
            return result.json
        return await result.bind(self._attempts, done.route, request.model)

    def _hold_estimate(self, call: Call, body: dict[str, Any], quotes: Iterable[Quote]) -> int:
        """An upper bound of the cost on any candidate channel: every body byte a prompt
        token, plus the output cap."""
        output = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(output, int) or output <= 0:
            output = self._hold_output_tokens
        choices = body.get("n")
        if isinstance(choices, int) and choices > 1:
            output *= choices
        prompt = call.body_bytes or len(orjson.dumps(body))
        return max(quote.estimate(prompt, output) for quote in quotes)

    async def _attempt(self, job: _Job, route: Route) -> _Answer | _PendingStream:
        provider = self._providers.chat(route.channel.type)
        if provider is None:
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve chat.")
        body = {**job.body, **route.body_overrides} if route.body_overrides else job.body
        if self._fetcher is not None and needs_inline_images(provider, route.endpoint):
            body = await inline_images(body, self._fetcher)
        job.quote(route)  # a channel without a price is skipped before it is called
        upstream_request = provider.chat_request(
            route.endpoint, body, route.upstream_model, job.request.stream
        )
        response = await self._upstream.send(upstream_request, route.timeouts)
        if response.status >= 400:
            raise await error_of(response, provider)
        quote = job.quote(route)
        if job.request.stream:
            return await self._open_stream(job, route, provider, response, quote)
        return await self._non_stream(job, response, provider, quote)

    async def _non_stream(
        self, job: _Job, response: aiohttp.ClientResponse, provider: ChatProvider, quote: Quote
    ) -> _Answer:
        call = job.call
        payload = await read_body(call, response)
        data = provider.chat_response(payload)
        served = data.get("model")
        call.served_model = served if isinstance(served, str) else None
        usage = Usage.from_openai(data.get("usage"))
        if usage is None:
            usage = self._count(call, job.body, response_text(data))
            data["usage"] = usage_object(usage.prompt_tokens, usage.completion_tokens, 0)
        complete_response(data, self._fingerprint)
        return _Answer(JSONResult(200, orjson.dumps(data)), usage, quote.cost(usage))

    async def _open_stream(
        self,
        job: _Job,
        route: Route,
        provider: ChatProvider,
        response: aiohttp.ClientResponse,
        quote: Quote,
    ) -> _PendingStream:
        """Wait for the first event; failing before it, the loop may try another channel."""
        payloads = _stream_payloads(response, provider.stream_translator(job.request.model))
        first = await first_of(
            response,
            payloads,
            route.timeouts.first_byte_s,
            "The upstream sent no stream event in time.",
        )
        return _PendingStream(self, job, quote, response, payloads, first)

    async def _settle_stream(
        self,
        job: _Job,
        quote: Quote,
        relayed: list[bytes],
        usage: Usage | None,
        status: int,
        error: str | None,
    ) -> None:
        if usage is None:
            # Charge what was generated; a stream that produced nothing costs nothing.
            usage = self._count_stream(job.call, job.body, relayed) if relayed else Usage()
        cost = quote.cost(usage)
        row = job.call.log_row(status=status, stream=True, usage=usage, cost_nano=cost, error=error)
        self._logs.submit(row)
        await self._meter.settle(job.ticket, cost, usage.total_tokens, time.time())
        if self._strict:
            await self._logs.commit_submitted()

    @property
    def strict(self) -> bool:
        return self._strict

    def _checkpoint(self, job: _Job, quote: Quote, relayed: list[bytes]) -> None:
        """Record what a running stream has cost so far, in case this process dies."""
        usage = self._count_stream(job.call, job.body, relayed)
        self._meter.checkpoint(job.ticket, quote.cost(usage))

    def _count_stream(self, call: Call, body: dict[str, Any], relayed: list[bytes]) -> Usage:
        chunks = []
        for data in relayed:
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                chunks.append(chunk)
        return self._count(call, body, generated_text(chunks))

    def _count(self, call: Call, body: dict[str, Any], completion: str) -> Usage:
        model = call.model or ""
        prompt = self._tokens.count_prompt(model, prompt_text(body), message_count(body))
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self._tokens.count(model, completion),
            counted_locally=True,
        )


CANCELLED = "client disconnected; the call was cancelled"
CHECKPOINT_EVERY_S = 1.0


class _PendingStream:
    """A stream with its first payload in hand, not yet handed to the client."""

    def __init__(
        self,
        relay: ChatRelay,
        job: _Job,
        quote: Quote,
        response: aiohttp.ClientResponse,
        payloads: AsyncIterator[list[bytes]],
        first: list[bytes] | None,
    ) -> None:
        self._relay = relay
        self._job = job
        self._quote = quote
        self._response = response
        self._payloads = payloads
        self._first = first

    async def bind(self, attempts: AttemptLoop, route: Route, model: str) -> StreamResult:
        events = self._events(attempts, route, model)
        try:
            head = await anext(events)
        except StopAsyncIteration:
            head = b""
        return StreamResult(head, events)

    async def _events(
        self, attempts: AttemptLoop, route: Route, model: str
    ) -> AsyncGenerator[bytes, None]:
        job, relay = self._job, self._relay
        wants_usage = job.request.client_wants_usage
        usage: Usage | None = None
        relayed: list[bytes] = []
        status, error = 200, None
        settled = False
        next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
        try:
            async for batch in _prepend(self._first, self._payloads):
                if time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
                    relay._checkpoint(job, self._quote, relayed)
                out: list[bytes] = []
                for data in batch:
                    if data == sse.DONE:
                        if relay.strict:
                            # Strict: the charge is durable before the stream's last byte.
                            # The upstream is read on to its end, as in any stream.
                            settled = True
                            await self._settle(attempts, route, model, relayed, usage, 200, None)
                        out.append(DONE_EVENT)
                        continue
                    if not relayed:
                        job.call.mark_first_byte()
                        job.call.served_model = _model_of(data)
                    relayed.append(data)
                    if b'"usage":{' in data or b'"usage": {' in data:
                        found, usage_only = _usage_of(data)
                        usage = found or usage
                        if usage_only and not wants_usage:
                            continue
                    out.append(sse.encode(data))
                if out:
                    yield b"".join(out)
        except STREAM_READ_ERRORS as exc:
            failure = (
                UpstreamTimeout("The upstream went silent for too long during the stream.")
                if isinstance(exc, TimeoutError)
                else UpstreamError("The upstream connection broke during the stream.")
            )
            status, error = failure.status, failure.message
            yield sse.encode(orjson.dumps(failure.body()))
        except (GeneratorExit, asyncio.CancelledError):
            status, error = STATUS_CLIENT_CLOSED, CANCELLED
            raise
        finally:
            # Closing an unfinished response drops its connection, which stops the upstream;
            # once the answer was read whole it is a no-op.
            self._response.close()
            if not settled:
                await self._settle(attempts, route, model, relayed, usage, status, error)

    async def _settle(
        self,
        attempts: AttemptLoop,
        route: Route,
        model: str,
        relayed: list[bytes],
        usage: Usage | None,
        status: int,
        error: str | None,
    ) -> None:
        attempts.finish(route, model, failed=status in (502, 504))
        await self._relay._settle_stream(self._job, self._quote, relayed, usage, status, error)


async def _prepend(
    first: list[bytes] | None, rest: AsyncIterator[list[bytes]]
) -> AsyncIterator[list[bytes]]:
    if first is None:
        return
    yield first
    async for item in rest:
        yield item


async def _stream_payloads(
    response: aiohttp.ClientResponse, translator: StreamTranslator | None
) -> AsyncIterator[list[bytes]]:
    """The ``data:`` payloads of an upstream stream as OpenAI chunks, read by read."""
    async for events in sse.iter_event_batches(response.content.iter_any()):
        payloads: list[bytes] = []
        for event in events:
            data = sse.event_data(event)
            if data is None:
                continue
            if translator is None:
                payloads.append(data)
            else:
                payloads += translator.feed(data)
        if payloads:
            yield payloads
    if translator is not None:
        yield [*translator.finish(), sse.DONE]


def _usage_of(data: bytes) -> tuple[Usage | None, bool]:
    """The usage in a chunk, and whether the chunk carries nothing else."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(chunk, dict):
        return None, False
    return Usage.from_openai(chunk.get("usage")), not chunk.get("choices")


def _model_of(data: bytes) -> str | None:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    model = chunk.get("model") if isinstance(chunk, dict) else None
    return model if isinstance(model, str) else None
