"""The chat completions relay: route, call the upstream, meter, log.

Non-stream responses are completed to the spec's required shape. Streams are relayed
event by event: the bytes pass through, and only events that can carry usage are parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from omnirelay.gateway.calls import STATUS_CLIENT_CLOSED, Call
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.pricing import Price, PriceBook, cost_nano
from omnirelay.gateway.requests import ChatRequest, check_chat_request
from omnirelay.gateway.routing import Router
from omnirelay.providers.base import ChatProvider, StreamTranslator
from omnirelay.providers.http import UpstreamClient, retry_after_seconds
from omnirelay.providers.registry import ProviderRegistry
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
MAX_ERROR_BODY = 64 * 1024
DONE_EVENT = sse.encode(sse.DONE)
STREAM_READ_ERRORS = (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError)


@dataclass(frozen=True, slots=True)
class JSONResult:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class StreamResult:
    """A stream whose first event has arrived; ``rest`` must be closed after use."""

    first: bytes
    rest: AsyncGenerator[bytes, None]


class ChatRelay:
    def __init__(
        self,
        *,
        router: Router,
        prices: PriceBook,
        providers: ProviderRegistry,
        upstream: UpstreamClient,
        logs: LogWriter,
        tokens: TokenCounter,
        fingerprint: str,
    ) -> None:
        self._router = router
        self._prices = prices
        self._providers = providers
        self._upstream = upstream
        self._logs = logs
        self._tokens = tokens
        self._fingerprint = fingerprint

    async def complete(self, call: Call, body: dict[str, Any]) -> JSONResult | StreamResult:
        try:
            request = check_chat_request(body)
            call.model = request.model
            return await self._relay(call, body, request)
        except GatewayError as error:
            stream = body.get("stream") is True
            self._logs.submit(call.log_row(status=error.status, stream=stream, error=error.message))
            raise

    async def _relay(
        self, call: Call, body: dict[str, Any], request: ChatRequest
    ) -> JSONResult | StreamResult:
        KeyCache.authorize_model(call.key, request.model)
        route = self._router.route(call.key.row.group_name, request.model)
        price = self._prices.lookup(request.model)
        if price is None:
            raise ModelNotPriced(
                f"The model '{request.model}' has no price on this gateway, so it cannot be "
                "metered. Ask the operator to set one (omnirelay price set).",
                param="model",
            )
        KeyCache.ensure_quota(call.key)
        provider = self._providers.chat(route.channel.type)
        if provider is None:
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve chat.")
        call.channel_id = route.channel.id
        upstream_request = provider.chat_request(
            route.endpoint, body, route.upstream_model, request.stream
        )
        response = await self._upstream.send(upstream_request)
        if response.status >= 400:
            raise await self._upstream_error(provider, response)
        if request.stream:
            payloads = _stream_payloads(response, provider.stream_translator(request.model))
            events = self._stream(call, response, payloads, price, body, request.client_wants_usage)
            # Wait for the first event before answering: until then a failure can still
            # be reported with a proper status, and a started generator always settles.
            try:
                first = await anext(events)
            except StopAsyncIteration:
                first = b""
            return StreamResult(first, events)
        return await self._non_stream(call, response, provider, price, body)

    async def _upstream_error(
        self, provider: ChatProvider, response: aiohttp.ClientResponse
    ) -> GatewayError:
        try:
            payload = await response.content.read(MAX_ERROR_BODY)
        except STREAM_READ_ERRORS:
            payload = b""
        finally:
            response.close()
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return provider.error(response.status, payload, retry_after)

    async def _non_stream(
        self,
        call: Call,
        response: aiohttp.ClientResponse,
        provider: ChatProvider,
        price: Price,
        body: dict[str, Any],
    ) -> JSONResult:
        try:
            payload = await response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout("The upstream did not finish its response in time.") from exc
        except STREAM_READ_ERRORS as exc:
            raise UpstreamError("The upstream connection broke during the response.") from exc
        finally:
            response.release()
        call.mark_first_byte()
        data = provider.chat_response(payload)
        served = data.get("model")
        call.served_model = served if isinstance(served, str) else None
        usage = Usage.from_openai(data.get("usage"))
        if usage is None:
            usage = self._count(call, body, response_text(data))
            data["usage"] = usage_object(usage.prompt_tokens, usage.completion_tokens, 0)
        complete_response(data, self._fingerprint)
        cost = cost_nano(price, usage)
        self._logs.submit(call.log_row(status=200, stream=False, usage=usage, cost_nano=cost))
        return JSONResult(200, orjson.dumps(data))

    async def _stream(
        self,
        call: Call,
        response: aiohttp.ClientResponse,
        payloads: AsyncIterator[bytes],
        price: Price,
        body: dict[str, Any],
        client_wants_usage: bool,
    ) -> AsyncGenerator[bytes, None]:
        usage: Usage | None = None
        relayed: list[bytes] = []
        status, error = 200, None
        reported_by_caller = False
        try:
            async for data in payloads:
                if data == sse.DONE:
                    yield DONE_EVENT
                    continue
                if not relayed:
                    call.mark_first_byte()
                    call.served_model = _model_of(data)
                relayed.append(data)
                if b'"usage":{' in data or b'"usage": {' in data:
                    found, usage_only = _usage_of(data)
                    usage = found or usage
                    if usage_only and not client_wants_usage:
                        continue
                yield sse.encode(data)
        except STREAM_READ_ERRORS as exc:
            failure = (
                UpstreamTimeout("The upstream stopped sending in time.")
                if isinstance(exc, TimeoutError)
                else UpstreamError("The upstream connection broke during the stream.")
            )
            if not relayed:
                # Nothing has reached the client: the caller answers, and logs, this error.
                reported_by_caller = True
                response.close()
                raise failure from exc
            status, error = failure.status, failure.message
            yield sse.encode(orjson.dumps(failure.body()))
        except (GeneratorExit, asyncio.CancelledError):
            status, error = STATUS_CLIENT_CLOSED, "client disconnected; the stream was cancelled"
            raise
        finally:
            if not reported_by_caller:
                self._settle_stream(call, response, price, body, relayed, usage, status, error)

    def _settle_stream(
        self,
        call: Call,
        response: aiohttp.ClientResponse,
        price: Price,
        body: dict[str, Any],
        relayed: list[bytes],
        usage: Usage | None,
        status: int,
        error: str | None,
    ) -> None:
        # Closing an unfinished response drops its connection, which stops the upstream.
        response.close()
        if usage is None:
            # Charge what was generated; a stream that produced nothing costs nothing.
            usage = self._count_stream(call, body, relayed) if relayed else Usage()
        cost = cost_nano(price, usage)
        row = call.log_row(status=status, stream=True, usage=usage, cost_nano=cost, error=error)
        self._logs.submit(row)

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


async def _stream_payloads(
    response: aiohttp.ClientResponse, translator: StreamTranslator | None
) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of an upstream stream, as OpenAI chunks."""
    async for event in sse.iter_events(response.content.iter_any()):
        data = sse.event_data(event)
        if data is None:
            continue
        if translator is None:
            yield data
            continue
        for chunk in translator.feed(data):
            yield chunk
    if translator is not None:
        for chunk in translator.finish():
            yield chunk
        yield sse.DONE


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
