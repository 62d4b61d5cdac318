"""Responses API streams, relayed and metered as they pass.

:class:`NativeStream` relays the events of an upstream that serves the Responses API
itself. They leave as they came, except the lifecycle events (``response.created`` ...
``response.completed``), whose ``response`` says what the gateway made of the call: its id,
``store`` and ``previous_response_id`` (the upstream got the conversation spelled out, with
``store: false``). Generated text (``*.delta``) is counted by an
:class:`~omnirelay.gateway.output.OutputTally`, which cuts a stream that runs away, and the
usage of the last event is checked (``usage_check``) before it is charged; when the
gateway counted instead, the last event carries the figures charged.

What the upstream sends is data: an event that is not a JSON object is dropped; an
``error`` event or ``response.failed`` ends the stream with the gateway's own ``error`` and
``response.failed`` events; a stream that ends before its last event is a failure too.

:class:`TranslatedStream` tells a chat stream (a
:class:`~omnirelay.gateway.token_stream.TokenStream`, which meters it) as Responses events,
through :class:`~omnirelay.wire.responses_events.ResponseEvents`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from omnirelay.gateway.operation import Attempt, StreamSource
from omnirelay.gateway.output import OutputTally
from omnirelay.gateway.rendered import Rendered
from omnirelay.gateway.token_stream import Lazy, StreamErrorEvent, TokenMeter
from omnirelay.providers.http import UpstreamResponse
from omnirelay.wire import sse
from omnirelay.wire.chat import usage_object
from omnirelay.wire.errors import GatewayError, UpstreamError
from omnirelay.wire.responses import FUNCTION_CALL, chat_usage, responses_usage
from omnirelay.wire.responses_events import ResponseEvents, failure_events, frame

EVENT_STREAM = "text/event-stream"
LIFECYCLE = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
ENDED = frozenset({"response.completed", "response.incomplete"})
GENERATED = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.custom_tool_call_input.delta",
    }
)


class NativeStream(TokenMeter):
    content_type = EVENT_STREAM

    def __init__(
        self,
        response: UpstreamResponse,
        tally: OutputTally,
        attempt: Attempt,
        prompt: Lazy,
        base: dict[str, Any],
        patch: dict[str, Any],
        output_cap: int | None,
    ) -> None:
        self._response = response
        self._tally = tally
        self._attempt = attempt
        self._prompt = prompt
        self._base = base
        """The response as the gateway tells it, for a failure before the upstream's own."""
        self._patch = patch
        self._output_cap = output_cap
        self.finished = False
        self.response: dict[str, Any] | None = None
        """The response the stream ended with (completed, incomplete or failed), for the store."""
        self._sequence = 0
        self._reported: dict[str, Any] | None = None
        self._items: dict[int, dict[str, Any]] = {}
        self._garbage = 0
        self._failure: StreamErrorEvent | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        try:
            async for batch in self._response.event_batches():
                out: list[bytes] = []
                failure: GatewayError | None = None
                for event in batch:
                    try:
                        self._take(event, out)
                    except GatewayError as error:  # a cut: this event is not relayed
                        failure = error
                    failure = failure or self._failure
                    if failure is not None or self.finished:
                        break
                if out:
                    yield b"".join(out)  # what came before a failure reaches the client
                if failure is not None:
                    raise failure
                if self.finished:
                    return  # what an upstream sends after its last event is not relayed
        except GatewayError:
            if self.finished:
                return
            raise
        finally:
            self._report_garbage()
        raise UpstreamError("The upstream ended the stream before it finished.")

    def _take(self, event: bytes, out: list[bytes]) -> None:
        data = sse.event_data(event)
        if data is None or data == sse.DONE:
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._garbage += 1
            return
        if type(payload) is not dict or not isinstance(payload.get("type"), str):
            self._garbage += 1
            return
        kind: str = payload["type"]
        relayed = len(out)
        if kind == "error":
            self._failure = StreamErrorEvent(payload.get("error") or payload)
        elif kind in LIFECYCLE:
            self._lifecycle(kind, payload, out)
        else:
            self._meter(kind, payload)
            out.append(event + b"\n\n")
        sequence = payload.get("sequence_number")
        if len(out) > relayed and type(sequence) is int:
            self._sequence = sequence + 1  # the client's next event continues from here

    def _lifecycle(self, kind: str, payload: dict[str, Any], out: list[bytes]) -> None:
        response = payload.get("response")
        if type(response) is not dict:
            self._garbage += 1
            return
        response.update(self._patch)
        self._base = response
        served = response.get("model")
        if isinstance(served, str):
            self._attempt.call.served_model = served
        if kind == "response.failed":
            error = response.get("error")
            self._failure = StreamErrorEvent(error if isinstance(error, dict) else {})
            return
        if kind in ENDED:
            self._reported = chat_usage(response.get("usage"))
            usage = self.usage()
            if usage.counted_locally:
                counted = usage_object(
                    usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
                )
                response["usage"] = responses_usage(counted)
            self.response = response
            self.finished = True
        out.append(frame(payload))

    def _meter(self, kind: str, payload: dict[str, Any]) -> None:
        if kind in GENERATED:
            delta = payload.get("delta")
            if delta and type(delta) is str:
                self._tally.add(delta)
            return
        if kind in ("response.output_item.added", "response.output_item.done"):
            item, index = payload.get("item"), payload.get("output_index")
            if type(item) is not dict or type(index) is not int:
                return
            if kind.endswith("added") and item.get("type") == FUNCTION_CALL:
                name = item.get("name")
                if name and type(name) is str:
                    self._tally.add(name)
            self._items[index] = item

    def failure_tail(self, error: GatewayError) -> bytes:
        response = self._base
        response["output"] = [self._items[index] for index in sorted(self._items)]
        self.response = response
        return b"".join(failure_events(self._sequence, response, error.status, error.body()))

    def close(self) -> None:
        self._response.close()


class TranslatedStream(Rendered):
    """A chat stream's source, its chunks told as Responses events."""

    content_type = EVENT_STREAM

    def __init__(self, inner: StreamSource, events: ResponseEvents) -> None:
        super().__init__(inner, events, self._fail)
        self._events = events

    @property
    def response(self) -> dict[str, Any] | None:
        """The response the stream ended with, for the store; None while it runs."""
        return self._events.response if self._events.ended else None

    def _fail(self, error: GatewayError) -> bytes:
        return b"".join(self._events.fail(error.status, error.body()))
