"""The metered-operation runner: every operation beyond chat, through chat's pipeline.

An :class:`Operation` says what its call may cost on a channel (the hold) and how one
attempt goes; the runner does the rest exactly as the chat relay does: the key's network
address and model checks, quotes on every candidate channel, admission with a hold, the
attempt loop with failover and breakers, settlement in the operation's own unit, and the
log row. A complete answer settles at once; a stream settles when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from omnirelay.gateway.attempts import AttemptLoop
from omnirelay.gateway.calls import STATUS_CLIENT_CLOSED, Call
from omnirelay.gateway.chat import CANCELLED
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.pricing import PriceBook, Quote
from omnirelay.gateway.routing import Route
from omnirelay.gateway.upstream_io import STREAM_READ_ERRORS, error_of, first_of, read_body
from omnirelay.providers.base import UpstreamRequest
from omnirelay.providers.http import UpstreamClient
from omnirelay.providers.operations import ErrorMapper
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.store.counters import Ticket
from omnirelay.wire.errors import GatewayError, ModelNotPriced, UpstreamError, UpstreamTimeout
from omnirelay.wire.tokens import TokenCounter
from omnirelay.wire.usage import Usage

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer for the client."""

    body: bytes
    content_type: str = JSON


@dataclass(frozen=True, slots=True)
class StreamReply:
    """An answer relayed as it arrives; ``rest`` must be closed after use."""

    content_type: str
    first: bytes
    rest: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class Charged:
    """One attempt's complete answer and what it costs."""

    reply: Reply
    cost: int
    usage: Usage = field(default_factory=Usage)
    served_model: str | None = None


class StreamMeter(Protocol):
    """Watches a stream go by and says what it cost when it ends."""

    def feed(self, chunk: bytes) -> None: ...

    def charge(self) -> tuple[int, Usage]: ...

    def failure_tail(self, error: GatewayError) -> bytes:
        """What to send the client when the upstream breaks mid-stream (may be empty)."""
        ...


@dataclass(slots=True)
class Streaming:
    """One attempt's stream, whose first chunk has arrived."""

    response: aiohttp.ClientResponse
    content_type: str
    first: bytes | None
    rest: AsyncIterator[bytes]
    meter: StreamMeter


@dataclass(frozen=True, slots=True)
class Operation:
    model: str
    hold: Callable[[Quote], int]
    """An upper bound of the call's cost at a quote; ModelNotPriced when it cannot be priced."""
    attempt: Callable[[Route, Quote], Awaitable[Charged | Streaming]]
    stream: bool = False


class OperationRunner:
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
        strict_settlement: bool = False,
    ) -> None:
        self._attempts = attempts
        self._prices = prices
        self.providers = providers
        self.upstream = upstream
        self._logs = logs
        self._meter = meter
        self.tokens = tokens
        self._strict = strict_settlement

    async def run(self, call: Call, operation: Operation) -> Reply | StreamReply:
        call.model = operation.model
        try:
            return await self._run(call, operation)
        except GatewayError as error:
            row = call.log_row(status=error.status, stream=operation.stream, error=error.message)
            self._logs.submit(row)
            raise
        except asyncio.CancelledError:
            row = call.log_row(
                status=STATUS_CLIENT_CLOSED, stream=operation.stream, error=CANCELLED
            )
            self._logs.submit(row)
            raise

    async def _run(self, call: Call, operation: Operation) -> Reply | StreamReply:
        KeyCache.authorize_ip(call.key, call.client_ip)
        KeyCache.authorize_model(call.key, operation.model)
        group = call.key.row.group_name
        quotes, holds = self._quotes(group, operation)
        ticket = await self._meter.admit(call.request_id, call.key, max(holds), time.time())

        async def attempt(route: Route) -> Charged | Streaming:
            quote = quotes.get(route.channel_id)
            if quote is None:
                raise UpstreamError(f"The model has no price on channel {route.channel_id}.")
            return await operation.attempt(route, quote)

        try:
            done = await self._attempts.run(call, group, operation.model, attempt)
        except BaseException:
            await self._meter.release(ticket)
            raise
        result = done.result
        if isinstance(result, Charged):
            self._attempts.finish(done.route, operation.model)
            call.served_model = result.served_model
            await self._settle(call, ticket, False, result.usage, result.cost, 200, None)
            return result.reply
        events = self._relay(call, ticket, done.route, operation.model, result)
        try:
            head = await anext(events)
        except StopAsyncIteration:
            head = b""
        return StreamReply(result.content_type, head, events)

    def _quotes(self, group: str, operation: Operation) -> tuple[dict[int, Quote], list[int]]:
        """The quote of every candidate channel that can price this call, and its hold."""
        quotes: dict[int, Quote] = {}
        holds: list[int] = []
        refusal: ModelNotPriced | None = None
        for route in self._attempts.candidates(group, operation.model):
            quote = self._prices.quote(operation.model, route.channel_id, group)
            if quote is None:
                continue
            try:
                holds.append(operation.hold(quote))
            except ModelNotPriced as error:
                refusal = error
                continue
            quotes[route.channel_id] = quote
        if not quotes:
            raise refusal or ModelNotPriced(
                f"The model '{operation.model}' has no price on this gateway, so it cannot be "
                "metered. Ask the operator to set one (omnirelay price set).",
                param="model",
            )
        return quotes, holds

    async def _relay(
        self, call: Call, ticket: Ticket, route: Route, model: str, stream: Streaming
    ) -> AsyncGenerator[bytes, None]:
        status, error = 200, None
        try:
            if stream.first is not None:
                call.mark_first_byte()
                stream.meter.feed(stream.first)
                yield stream.first
            async for chunk in stream.rest:
                stream.meter.feed(chunk)
                yield chunk
        except STREAM_READ_ERRORS as exc:
            failure = (
                UpstreamTimeout("The upstream went silent for too long during the stream.")
                if isinstance(exc, TimeoutError)
                else UpstreamError("The upstream connection broke during the stream.")
            )
            status, error = failure.status, failure.message
            tail = stream.meter.failure_tail(failure)
            if tail:
                yield tail
        except (GeneratorExit, asyncio.CancelledError):
            status, error = STATUS_CLIENT_CLOSED, CANCELLED
            raise
        finally:
            # Closing an unfinished response drops its connection, which stops the upstream.
            stream.response.close()
            self._attempts.finish(route, model, failed=status in (502, 504))
            cost, usage = stream.meter.charge()
            await self._settle(call, ticket, True, usage, cost, status, error)

    async def _settle(
        self,
        call: Call,
        ticket: Ticket,
        stream: bool,
        usage: Usage,
        cost: int,
        status: int,
        error: str | None,
    ) -> None:
        row = call.log_row(status=status, stream=stream, usage=usage, cost_nano=cost, error=error)
        self._logs.submit(row)
        await self._meter.settle(ticket, cost, usage.total_tokens, time.time())
        if self._strict:
            await self._logs.commit_submitted()

    # -- what attempts share ----------------------------------------------------------------

    async def send(
        self, provider: ErrorMapper, request: UpstreamRequest, route: Route
    ) -> aiohttp.ClientResponse:
        """Send one attempt's request; an error answer becomes the gateway's error."""
        response = await self.upstream.send(request, route.timeouts)
        if response.status < 400:
            return response
        raise await error_of(response, provider)

    async def read(self, call: Call, response: aiohttp.ClientResponse) -> bytes:
        """A complete answer's body."""
        return await read_body(call, response)

    async def open_stream(
        self,
        response: aiohttp.ClientResponse,
        chunks: AsyncIterator[bytes],
        route: Route,
        meter: StreamMeter,
    ) -> Streaming:
        """Wait for the first chunk; failing before it, the loop may try another channel."""
        silent = "The upstream sent nothing of its stream in time."
        first = await first_of(response, chunks, route.timeouts.first_byte_s, silent)
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        return Streaming(response, content_type, first, chunks, meter)
