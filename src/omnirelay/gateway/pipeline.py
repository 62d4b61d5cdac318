"""The pipeline: one runner for every call, whatever its operation.

It owns the steps every call takes: authorize (the key and the model; the client's address
was checked where the call arrived, ``api.begin``), quote the model on every candidate
channel, hold the most the call may cost and admit it against the key's limits, run the
attempt loop with failover, then settle the exact cost (or release the hold) and log the
call, however it ends; a call accepted upstream as a task hands its hold over to the task,
to be settled when the task ends. An :class:`Operation` brings only
what is its own: the hold, and what one attempt sends and how it reads the answer.

A complete answer settles at once. A stream settles when it ends, however it ends: at its
last event, on an upstream failure or a cut (with an error event for the client), or when
the client leaves; while it runs, its cost so far is checkpointed every second so that a
process that dies mid-stream is settled from it. Under strict settlement the charge is
committed before the stream's last chunk leaves.

When the process shuts down, :meth:`Pipeline.cut_streams` ends the streams still running
(after the drain's grace): each upstream connection is dropped, and the stream ends as any
broken one does, with the gateway's error event for the client and a charge for what was
relayed, logged as cut at shutdown.

The runner needs no HTTP request: a call built in-process (a batch line) runs the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator

from omnirelay.gateway.attempts import AttemptLoop
from omnirelay.gateway.calls import Call
from omnirelay.gateway.charges import (
    CANCELLED,
    MAX_COST_NANO,
    STATUS_CLIENT_CLOSED,
    Settlement,
)
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.operation import (
    Attempt,
    Charged,
    Deferred,
    Operation,
    Reply,
    Streaming,
    StreamReply,
    StreamSource,
)
from omnirelay.gateway.pricing import PriceBook, Quote
from omnirelay.gateway.routing import Route
from omnirelay.gateway.stats import CallStats
from omnirelay.gateway.tracing import Tracer
from omnirelay.store.counters import Ticket
from omnirelay.wire.errors import GatewayError, ModelNotPriced, UpstreamError, UpstreamTimeout
from omnirelay.wire.usage import Usage

log = logging.getLogger("omnirelay.pipeline")

CHECKPOINT_EVERY_S = 1.0
FAILED_STATUSES = (502, 504)


class ShuttingDown(GatewayError):
    status = 503
    type = "server_error"
    code = "shutting_down"


def _shutting_down() -> ShuttingDown:
    return ShuttingDown(
        "The gateway shut down before this call ended; what was relayed is charged. Retry.",
        retry_after=1,
    )


class Pipeline:
    def __init__(
        self,
        *,
        attempts: AttemptLoop,
        prices: PriceBook,
        meter: Meter,
        settlement: Settlement,
        stats: CallStats | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._attempts = attempts
        self._tracer = tracer
        self._prices = prices
        self._meter = meter
        self._settlement = settlement
        self._stats = stats
        self._streams: set[StreamSource] = set()
        self._cutting = False

    @property
    def streams_running(self) -> int:
        return len(self._streams)

    def cut_streams(self) -> int:
        """End every stream still running (shutdown): returns how many were cut."""
        self._cutting = True
        streams = list(self._streams)
        for source in streams:
            source.close()
        return len(streams)

    async def run(self, call: Call, operation: Operation) -> Reply | StreamReply:
        call.model = operation.model
        if self._stats is not None:
            self._stats.began()  # until its settlement, which every call reaches once
        if self._tracer is not None:
            with self._tracer.call(call):
                return await self._settled_run(call, operation)
        return await self._settled_run(call, operation)

    def check(self, call: Call, operation: Operation) -> None:
        """Raise what would refuse the call before admission (the key, the model, no
        channel or price for it), without running it: for a call that runs later."""
        KeyCache.authorize_call(call.key, operation.model, time.time())
        self._quotes(call.key.row.group_name, operation)

    async def _settled_run(self, call: Call, operation: Operation) -> Reply | StreamReply:
        try:
            return await self._run(call, operation)
        except GatewayError as error:
            self._settlement.refused(call, error, stream=operation.stream)
            raise
        except asyncio.CancelledError:
            if self._cutting:
                self._settlement.refused(call, _shutting_down(), stream=operation.stream)
            else:
                self._settlement.cancelled(call, stream=operation.stream)
            raise

    async def _run(self, call: Call, operation: Operation) -> Reply | StreamReply:
        key, model = call.key, operation.model
        now = time.time()
        KeyCache.authorize_call(key, model, now)
        group = key.row.group_name
        quotes, hold = self._quotes(group, operation, batch=call.batch_id is not None)
        ticket = await self._meter.admit(call.request_id, key, hold, now)
        limit = self._meter.spend_limit(key, hold)

        async def attempt(route: Route) -> Charged | Streaming | Deferred:
            quote = quotes.get(route.channel_id)
            if quote is None:
                # Moves on to a channel where the model has a price.
                raise UpstreamError(f"The model has no price on channel {route.channel_id}.")
            return await operation.attempt(Attempt(call, route, quote, limit, hold))

        try:
            done = await self._attempts.run(call, group, model, attempt, only=operation.channel_id)
        except BaseException:
            await self._settlement.release(ticket)
            raise
        result = done.result
        if isinstance(result, Deferred):
            self._attempts.finish(done.route, model)
            await self._settlement.defer(call, ticket, result.task_id)
            return result.reply
        if isinstance(result, Charged):
            self._attempts.finish(done.route, model)
            call.served_model = result.served_model
            await self._settlement.settle(
                call, ticket, stream=False, usage=result.usage, cost_nano=result.cost
            )
            return result.reply
        events = self._relay(call, ticket, done.route, model, result)
        try:
            head = await anext(events)
        except StopAsyncIteration:
            head = b""
        return StreamReply(result.source.content_type, head, events)

    def _quotes(
        self, group: str, operation: Operation, *, batch: bool = False
    ) -> tuple[dict[int, Quote], int]:
        """The quote of every candidate channel that can price this call, and the hold:
        the most the call may cost on any of them (a batch line's at the batch price)."""
        quotes: dict[int, Quote] = {}
        hold = 0
        refusal: ModelNotPriced | None = None
        for route in self._attempts.candidates(group, operation.model, operation.channel_id):
            quote = self._prices.quote(operation.model, route.channel_id, group, batch=batch)
            if quote is None:
                continue
            try:
                hold = max(hold, operation.hold(quote))
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
        # A client's absurd max_tokens must not make a hold no column can store.
        return quotes, min(hold, MAX_COST_NANO)

    async def _relay(
        self, call: Call, ticket: Ticket, route: Route, model: str, stream: Streaming
    ) -> AsyncGenerator[bytes, None]:
        source = stream.source
        status, error = 200, None
        settled = False
        checkpoint_at = time.monotonic() + CHECKPOINT_EVERY_S
        self._streams.add(source)
        try:
            if stream.first is not None:
                call.mark_first_byte()
                if source.finished and self._settlement.strict:
                    settled = True
                    await self._settle_stream(call, ticket, route, model, stream, 200, None)
                yield stream.first
            async for chunk in stream.rest:
                now = time.monotonic()
                if now >= checkpoint_at:
                    if now >= stream.ends_at:
                        raise UpstreamTimeout(
                            "The upstream's stream passed the total time it is allowed."
                        )
                    checkpoint_at = now + CHECKPOINT_EVERY_S
                    self._meter.checkpoint(ticket, source.cost_so_far())
                if source.finished and self._settlement.strict and not settled:
                    # Strict: the charge is durable before the stream's last chunk.
                    settled = True
                    await self._settle_stream(call, ticket, route, model, stream, 200, None)
                yield chunk
        except GatewayError as failure:
            ended = _shutting_down() if self._cutting else failure
            status, error = ended.status, ended.logged
            tail = source.failure_tail(ended)
            if tail:
                yield tail
        except (GeneratorExit, asyncio.CancelledError):
            status, error = STATUS_CLIENT_CLOSED, CANCELLED
            if self._cutting:
                status, error = ShuttingDown.status, _shutting_down().message
            raise
        finally:
            self._streams.discard(source)
            source.close()
            if not settled:
                await self._settle_stream(call, ticket, route, model, stream, status, error)

    async def _settle_stream(
        self,
        call: Call,
        ticket: Ticket,
        route: Route,
        model: str,
        stream: Streaming,
        status: int,
        error: str | None,
    ) -> None:
        self._attempts.finish(route, model, failed=status in FAILED_STATUSES)
        try:
            cost, usage = stream.source.charge()
        except Exception:
            # The hold must still be settled: at what the stream had cost by its checkpoint.
            log.exception("metering stream %s failed; charging its cost so far", call.request_id)
            cost, usage = stream.source.cost_so_far(), Usage()
        await self._settlement.settle(
            call, ticket, stream=True, usage=usage, cost_nano=cost, status=status, error=error
        )
