"""OpenAI ``chat.completion.chunk`` payloads, told as the Responses API's event stream.

The first chunk opens the response (``response.created``, ``response.in_progress``). Text
becomes a ``message`` item with an ``output_text`` part (``response.output_text.delta``), a
refusal a ``refusal`` part, reasoning a ``reasoning`` item, and each tool call a
``function_call`` item whose argument fragments arrive as
``response.function_call_arguments.delta``; a new kind of output closes the open item
(its ``.done`` events). ``[DONE]`` closes the response with ``response.completed`` (or
``response.incomplete`` when the output cap or a filter stopped it), carrying the usage.
A failure ends the stream with an ``error`` event and ``response.failed``. Every event
carries its ``sequence_number``.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.wire import responses as shape
from omnirelay.wire import sse

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
ERROR_CODES = {429: "rate_limit_exceeded"}


def frame(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def failure_events(
    sequence: int, response: dict[str, Any], status: int, body: dict[str, Any]
) -> list[bytes]:
    """An ``error`` event for a gateway error's ``body``, then ``response.failed``; the
    first carries ``sequence``. ``response`` is closed as failed, in place."""
    error = shape.obj(body.get("error"))
    message = str(error.get("message") or "The upstream failed during the stream.")
    code = error.get("code") if isinstance(error.get("code"), str) else None
    param = error.get("param") if isinstance(error.get("param"), str) else None
    response["status"] = "failed"
    response["error"] = {"code": ERROR_CODES.get(status, "server_error"), "message": message}
    for item in response.get("output") or ():
        if isinstance(item, dict) and item.get("status") == "in_progress":
            item["status"] = "incomplete"
    events: list[dict[str, Any]] = [
        {"type": "error", "code": code, "message": message, "param": param},
        {"type": "response.failed", "response": response},
    ]
    return [frame({**event, "sequence_number": sequence + n}) for n, event in enumerate(events)]


class _Open:
    """The output item being streamed: its index in ``output`` and what it holds so far."""

    __slots__ = ("index", "item", "part", "text")

    def __init__(self, index: int, item: dict[str, Any], part: str | None) -> None:
        self.index = index
        self.item = item
        self.part = part  # "output_text", "refusal" or "reasoning_text"; None: a call
        self.text: list[str] = []


class ResponseEvents:
    """Translates one chat stream; ``response`` is the object the events tell of, complete
    once :attr:`ended` (for the store)."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self._sequence = 0
        self._started = False
        self.ended = False
        self._open: _Open | None = None
        self._calls: dict[int, _Open] = {}  # a chat tool call's index -> its item
        self._stop: str | None = None
        self._usage: dict[str, Any] | None = None

    @property
    def sequence(self) -> int:
        """The next event's sequence number."""
        return self._sequence

    def feed(self, payload: bytes) -> list[bytes]:
        if self.ended:
            return []
        if payload == sse.DONE:
            return self.finish()
        chunk = sse.json_object(payload)
        if chunk is None:
            return []
        events = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events.extend(self._choice(choice))
        return [self._frame(event) for event in events]

    def finish(self) -> list[bytes]:
        if self.ended:
            return []
        events = self._start({})
        events.extend(self._close_all())
        shape.finished(self.response, self._stop, shape.responses_usage(self._usage))
        kind = "response.completed"
        if self.response["status"] == "incomplete":
            kind = "response.incomplete"
        events.append({"type": kind, "response": self.response})
        self.ended = True
        return [self._frame(event) for event in events]

    def fail(self, status: int, body: dict[str, Any]) -> list[bytes]:
        """The events that end a broken stream: ``error``, then ``response.failed``."""
        if self.ended:
            return []
        head = [self._frame(event) for event in self._start({})]
        self.ended = True
        tail = failure_events(self._sequence, self.response, status, body)
        self._sequence += len(tail)
        return head + tail

    # -- pieces ----------------------------------------------------------------------------

    def _frame(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self._sequence
        self._sequence += 1
        return frame(event)

    def _start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.response["model"] = chunk["model"]
        # Each event carries the response as it stands then, not a reference to a later one.
        snapshot = orjson.loads(orjson.dumps(self.response))
        return [
            {"type": "response.created", "response": snapshot},
            {"type": "response.in_progress", "response": snapshot},
        ]

    def _choice(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        delta = shape.obj(choice.get("delta"))
        for field, part in (
            ("reasoning_content", "reasoning_text"),
            ("content", "output_text"),
            ("refusal", "refusal"),
        ):
            text = delta.get(field)
            if isinstance(text, str) and text:
                events.extend(self._text(part, text))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                events.extend(self._tool_call(call))
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._stop = reason
            events.extend(self._close_all())
        return events

    def _text(self, part: str, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        opened = self._open
        if opened is None or opened.part != part:
            events.extend(self._close_all())
            opened = self._open_text(part, events)
        opened.text.append(text)
        where = {"item_id": opened.item["id"], "output_index": opened.index, "content_index": 0}
        if part == "output_text":
            events.append({"type": "response.output_text.delta", **where, "delta": text})
            events[-1]["logprobs"] = []
        elif part == "refusal":
            events.append({"type": "response.refusal.delta", **where, "delta": text})
        else:
            events.append({"type": "response.reasoning_text.delta", **where, "delta": text})
        return events

    def _open_text(self, part: str, events: list[dict[str, Any]]) -> _Open:
        if part == "reasoning_text":
            item = shape.reasoning_item(shape.item_id(shape.REASONING), "", "in_progress")
            added = {"type": "reasoning_text", "text": ""}
        else:
            item = shape.message_item(shape.item_id(shape.MESSAGE), [], "in_progress")
            added = (
                shape.output_text("")
                if part == "output_text"
                else {
                    "type": "refusal",
                    "refusal": "",
                }
            )
        opened = self._add(item, part, events)
        where = {"item_id": item["id"], "output_index": opened.index, "content_index": 0}
        events.append({"type": "response.content_part.added", **where, "part": added})
        return opened

    def _tool_call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        function = shape.obj(call.get("function"))
        opened = self._calls.get(position)
        if opened is None:
            # A new call closes the items before it, as OpenAI streams them one by one.
            events.extend(self._close_all())
            item = shape.function_call_item(
                shape.item_id(shape.FUNCTION_CALL),
                str(call.get("id") or shape.new_id("call_")),
                str(function.get("name") or ""),
                "",
                "in_progress",
            )
            opened = self._calls[position] = self._add(item, None, events)
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            opened.text.append(fragment)
            if opened.item["status"] != "in_progress":  # a late fragment of a closed call
                opened.item["arguments"] += fragment
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": opened.item["id"],
                    "output_index": opened.index,
                    "delta": fragment,
                }
            )
        return events

    def _add(self, item: dict[str, Any], part: str | None, events: list[dict[str, Any]]) -> _Open:
        output: list[dict[str, Any]] = self.response["output"]
        opened = _Open(len(output), item, part)
        output.append(item)
        added = orjson.loads(orjson.dumps(item))
        events.append({"type": "response.output_item.added", "output_index": opened.index})
        events[-1]["item"] = added
        if part is not None:
            self._open = opened
        return opened

    def _close_all(self) -> list[dict[str, Any]]:
        """Close every open item (a closed call keeps its place for late fragments)."""
        events: list[dict[str, Any]] = []
        if self._open is not None:
            events.extend(self._close(self._open))
        for opened in self._calls.values():
            events.extend(self._close(opened))
        return events

    def _close(self, opened: _Open) -> list[dict[str, Any]]:
        if opened is self._open:
            self._open = None
        item = opened.item
        if item["status"] != "in_progress":
            return []
        text = "".join(opened.text)
        item["status"] = "completed"
        where = {"item_id": item["id"], "output_index": opened.index}
        events: list[dict[str, Any]] = []
        if opened.part is None:
            item["arguments"] = text
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **where,
                    "name": item["name"],
                    "arguments": text,
                }
            )
        else:
            events.extend(self._close_part(opened, text, where))
        events.append({"type": "response.output_item.done", "output_index": opened.index})
        events[-1]["item"] = orjson.loads(orjson.dumps(item))
        return events

    def _close_part(self, opened: _Open, text: str, where: dict[str, Any]) -> list[dict[str, Any]]:
        part_where = {**where, "content_index": 0}
        if opened.part == "output_text":
            part = shape.output_text(text)
            done = {"type": "response.output_text.done", **part_where, "text": text, "logprobs": []}
        elif opened.part == "refusal":
            part = {"type": "refusal", "refusal": text}
            done = {"type": "response.refusal.done", **part_where, "refusal": text}
        else:
            part = {"type": "reasoning_text", "text": text}
            done = {"type": "response.reasoning_text.done", **part_where, "text": text}
        opened.item["content"] = [part]
        return [done, {"type": "response.content_part.done", **part_where, "part": dict(part)}]
