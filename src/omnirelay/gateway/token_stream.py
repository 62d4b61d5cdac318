"""A stream of generated tokens (chat, legacy completions), relayed and metered as it passes.

Each upstream event becomes an OpenAI chunk (through the channel's translator when its
dialect is another); the events of one read leave in one write, their bytes unchanged.
Each chunk is parsed once, for its generated text (counted by an :class:`OutputTally`,
which cuts a stream that runs away) and its usage.

What the upstream sends is data, not commands:
- an event that is not a JSON object (garbage, invalid UTF-8) is dropped, not relayed;
- an error object in the stream ends it with the gateway's error event;
- a stream that ends without ``[DONE]`` ends properly when every choice had finished, and
  with an error event otherwise;
- usage is checked (``usage_check``) before it is charged, and when the client asked for
  usage it gets a usage chunk with the figures charged, counted when the upstream sent none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from omnirelay.gateway.operation import Attempt
from omnirelay.gateway.output import OutputTally, SpendLimit, output_cap
from omnirelay.gateway.requests import ChatRequest
from omnirelay.gateway.usage_check import Counts, trusted_usage
from omnirelay.providers.base import StreamTranslator
from omnirelay.providers.http import UpstreamResponse
from omnirelay.wire import sse
from omnirelay.wire.chat import message_count, prompt_text, usage_object
from omnirelay.wire.errors import GatewayError, UpstreamError, clean, for_log
from omnirelay.wire.tokens import TokenCounter
from omnirelay.wire.usage import Usage

log = logging.getLogger("omnirelay.chat")

DONE_EVENT = sse.encode(sse.DONE)
TEXT_FIELDS = ("content", "refusal", "reasoning_content")


class Lazy:
    """A count made once, when first needed."""

    __slots__ = ("_count", "_value")

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count
        self._value: int | None = None

    def __call__(self) -> int:
        if self._value is None:
            self._value = self._count()
        return self._value


def chat_prompt(tokens: TokenCounter, model: str, body: dict[str, Any]) -> Lazy:
    """A chat request's prompt tokens, as OpenAI counts them (messages and tools)."""
    return Lazy(lambda: tokens.count_prompt(model, prompt_text(body), message_count(body)))


def output_tally(
    tokens: TokenCounter, attempt: Attempt, request: ChatRequest, prompt: Lazy
) -> OutputTally:
    """The tally that meters one attempt's stream, with the request's and the key's limits."""
    spend = None
    if attempt.spend_limit is not None:
        bound = attempt.call.body_bytes or prompt()
        spend = SpendLimit(attempt.quote, attempt.spend_limit, bound, prompt)
    cap = output_cap(request.max_output, request.choices)
    return OutputTally(tokens.counter(request.model), cap, spend)


class StreamErrorEvent(UpstreamError):
    """The upstream put an error object in its stream; the client gets it, cleaned."""

    def __init__(self, error: dict[str, Any]) -> None:
        said = str(error.get("message") or "")
        super().__init__(
            f"The upstream failed during the stream: {clean(said) or 'no reason given'}",
            detail=for_log(said) or None,
        )
        for name in ("type", "code"):
            if isinstance(error.get(name), str):
                setattr(self, name, error[name])


class TokenMeter:
    """What a stream of generated tokens costs: the usage an upstream reported, checked
    against what the gateway counted (``usage_check``), at the attempt's quote, never past
    its spend limit. A stream class sets ``_tally``, ``_attempt``, ``_prompt``,
    ``_reported`` and ``_output_cap``, and counts in ``_garbage`` the events it dropped."""

    _tally: OutputTally
    _attempt: Attempt
    _prompt: Lazy
    _reported: dict[str, Any] | None
    _output_cap: int | None
    _garbage: int

    def _report_garbage(self) -> None:
        """Once per stream, at its end: how many events were not JSON objects."""
        if self._garbage:
            log.warning(
                "channel %s sent %d stream events that were not JSON objects; dropped",
                self._attempt.route.channel_id,
                self._garbage,
            )

    def usage(self) -> Usage:
        tally = self._tally
        counts = Counts(
            prompt=self._prompt,
            completion=lambda: tally.tokens,
            completion_bytes=tally.bytes,
            output_cap=self._output_cap,
        )
        return trusted_usage(self._reported, counts, self._attempt.route.channel_id)

    def cost_so_far(self) -> int:
        usage = Usage(prompt_tokens=self._prompt(), completion_tokens=self._tally.tokens)
        return self._attempt.quote.cost(usage)

    def charge(self) -> tuple[int, Usage]:
        if self._reported is None and self._tally.empty:
            return 0, Usage()  # a stream that generated nothing costs nothing
        usage = self.usage()
        cost = self._attempt.quote.cost(usage)
        limit = self._attempt.spend_limit
        # The chunk that would have passed the limit was cut, never relayed: not charged.
        return (cost if limit is None else min(cost, limit)), usage


class TokenStream(TokenMeter):
    """A chat stream; a subclass reads other chunks (``completions``) by overriding
    :meth:`_meter_choices` and :attr:`OBJECT`."""

    content_type = "text/event-stream"
    OBJECT = "chat.completion.chunk"

    def __init__(
        self,
        response: UpstreamResponse,
        translator: StreamTranslator | None,
        tally: OutputTally,
        attempt: Attempt,
        prompt: Lazy,
        request: ChatRequest,
    ) -> None:
        self._response = response
        self._translator = translator
        self._tally = tally
        self._attempt = attempt
        self._prompt = prompt
        self._request = request
        self._output_cap = request.output_cap
        self.finished = False
        self._reported: dict[str, Any] | None = None
        self._usage_relayed = False
        self._ended_choice = False
        self._head: dict[str, Any] | None = None
        self._garbage = 0
        self._failure: StreamErrorEvent | None = None

    # -- the stream ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        translator = self._translator
        try:
            async for batch in self._response.event_batches():
                out: list[bytes] = []
                for event in batch:
                    data = sse.event_data(event)
                    if data is None:
                        continue
                    if translator is None:
                        self._take(data, out)
                    else:
                        for payload in translator.feed(data):
                            self._take(payload, out)
                    if self._failure is not None:
                        break
                if out:
                    yield b"".join(out)
                if self._failure is not None:
                    # What came before the error reached the client first.
                    raise self._failure
        except GatewayError:
            if self.finished:
                return  # the client has its whole answer; what broke after it is moot
            raise
        finally:
            self._report_garbage()
        if not self.finished:
            yield self._end()

    def _end(self) -> bytes:
        """The upstream's stream ended without ``[DONE]``."""
        out: list[bytes] = []
        if self._translator is not None:
            for payload in self._translator.finish():
                self._take(payload, out)
        if self._failure is not None:
            raise self._failure
        if not self.finished:
            if not self._ended_choice:
                raise UpstreamError("The upstream ended the stream before it finished.")
            self._take(sse.DONE, out)
        return b"".join(out)

    def _take(self, payload: bytes, out: list[bytes]) -> None:
        """Relay (or not) one chunk's payload, metering it on the way."""
        if self._failure is not None:
            return
        if payload == sse.DONE:
            if not self.finished:
                self._finish(out)
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._garbage += 1
            return
        if type(chunk) is not dict:
            self._garbage += 1
            return
        if self._head is None:
            self._first(chunk)
        choices = chunk.get("choices")
        if choices:
            self._meter_choices(choices)
        usage = chunk.get("usage")
        if usage is not None and type(usage) is dict:
            self._reported = usage
            if not choices:
                if self._request.client_wants_usage:
                    self._usage_relayed = True
                    usage = self.usage()
                    # Relayed as it came, unless the charge is not what it says.
                    trusted = not usage.counted_locally
                    out.append(sse.encode(payload) if trusted else self._usage_event(usage))
                return
            self._usage_relayed = True
        elif not choices and type(chunk.get("error")) is dict:
            self._failure = StreamErrorEvent(chunk["error"])
            return
        out.append(sse.encode(payload))

    def _first(self, chunk: dict[str, Any]) -> None:
        self._head = {
            "id": chunk.get("id") or "chatcmpl-omnirelay",
            "object": self.OBJECT,
            "created": chunk.get("created") or int(time.time()),
            "model": chunk.get("model") or self._request.model,
        }
        served = chunk.get("model")
        if isinstance(served, str):
            self._attempt.call.served_model = served

    def _meter_choices(self, choices: Any) -> None:
        add = self._tally.add
        for choice in choices if type(choices) is list else ():
            if type(choice) is not dict:
                continue
            delta = choice.get("delta")
            if delta and type(delta) is dict:
                for name in TEXT_FIELDS:
                    text = delta.get(name)
                    if text and type(text) is str:
                        add(text)
                calls = delta.get("tool_calls")
                if calls and type(calls) is list:
                    self._meter_tool_calls(calls)
            reason = choice.get("finish_reason")
            if reason:
                self._ended_choice = True
                self._attempt.call.finish_reason = reason

    def _meter_tool_calls(self, calls: list[Any]) -> None:
        for call in calls:
            function = call.get("function") if type(call) is dict else None
            if type(function) is not dict:
                continue
            for name in ("name", "arguments"):
                text = function.get(name)
                if text and type(text) is str:
                    self._tally.add(text)

    def _finish(self, out: list[bytes]) -> None:
        if self._request.client_wants_usage and not self._usage_relayed:
            out.append(self._usage_event(self.usage()))
        out.append(DONE_EVENT)
        self.finished = True

    def _usage_event(self, usage: Usage) -> bytes:
        """A usage chunk with the figures the call is charged."""
        head = self._head or {
            "id": "chatcmpl-omnirelay",
            "object": self.OBJECT,
            "created": int(time.time()),
            "model": self._request.model,
        }
        chunk = {
            **head,
            "choices": [],
            "usage": usage_object(
                usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
            ),
        }
        return sse.encode(orjson.dumps(chunk))

    def failure_tail(self, error: GatewayError) -> bytes:
        return sse.encode(orjson.dumps(error.body()))

    def close(self) -> None:
        self._response.close()
