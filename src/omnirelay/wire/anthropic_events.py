"""OpenAI ``chat.completion.chunk`` payloads, told as Anthropic's SSE event stream.

The first chunk opens the message (``message_start``, with the prompt's tokens as the
gateway counted them, and a ``ping``). Content becomes a ``text`` block and each tool call
a ``tool_use`` block whose argument fragments arrive as ``input_json_delta``; a new kind of
content closes the open block. The stop reason and the upstream's usage chunk go in
``message_delta``, then ``message_stop``. An in-stream error object becomes an ``error``
event.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.wire import anthropic as shared
from omnirelay.wire import sse
from omnirelay.wire.anthropic_inbound import message_id


def frame(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class MessageEvents:
    def __init__(self, model: str, input_tokens: int = 0) -> None:
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._ended = False
        self._open: int | None = None  # the index of the open content block
        self._open_text = False
        self._blocks = 0
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._stop_reason = "end_turn"
        self._usage: dict[str, Any] = {}

    def feed(self, payload: bytes) -> list[bytes]:
        if self._ended:
            return []
        if payload == sse.DONE:
            return self.finish()
        chunk = sse.json_object(payload)
        if chunk is None:
            return []
        if isinstance(chunk.get("error"), dict):
            return self._error(chunk["error"])
        events = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events.extend(self._choice(choice))
        return [frame(event) for event in events]

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        events = self._start({})
        events.extend(self._close())
        usage = shared.anthropic_usage(self._usage)
        if not self._usage:
            # No usage chunk came: the counted prompt stands (message_delta's counts replace
            # message_start's in the client).
            usage["input_tokens"] = self._input_tokens
        delta = {"stop_reason": self._stop_reason, "stop_sequence": None}
        events.append({"type": "message_delta", "delta": delta, "usage": usage})
        events.append({"type": "message_stop"})
        self._ended = True
        return [frame(event) for event in events]

    # -- pieces ----------------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        model = chunk.get("model") if isinstance(chunk.get("model"), str) else self._model
        message: dict[str, Any] = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The upstream reports its usage at the end, in message_delta.
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _choice(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        delta = shared.obj(choice.get("delta"))
        for field in ("content", "refusal"):
            text = delta.get(field)
            if isinstance(text, str) and text:
                events.extend(self._text(text))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                events.extend(self._tool_call(call))
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._stop_reason = shared.stop_reason(reason, used_tools=bool(self._tools))
            events.extend(self._close())
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if not self._open_text:
            events.extend(self._close())
            events.append(self._open_block({"type": "text", "text": ""}))
            self._open_text = True
        delta = {"type": "text_delta", "text": text}
        events.append({"type": "content_block_delta", "index": self._open, "delta": delta})
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = call.get("index", 0)
        function = shared.obj(call.get("function"))
        block = self._tools.get(position)
        if block is None:
            events.extend(self._close())
            opened: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{position}",
                "name": function.get("name") or "",
                "input": {},
            }
            events.append(self._open_block(opened))
            block = self._tools[position] = self._blocks - 1
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            events.append({"type": "content_block_delta", "index": block, "delta": delta})
        return events

    def _open_block(self, block: dict[str, Any]) -> dict[str, Any]:
        self._open = self._blocks
        self._blocks += 1
        return {"type": "content_block_start", "index": self._open, "content_block": block}

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        index, self._open, self._open_text = self._open, None, False
        return [{"type": "content_block_stop", "index": index}]

    def _error(self, error: dict[str, Any]) -> list[bytes]:
        self._ended = True
        status = {"upstream_unavailable": 529, "upstream_timeout": 504}.get(
            str(error.get("code")), 500
        )
        message = str(error.get("message") or "The upstream failed during the stream.")
        events = self._start({})
        events.append(shared.error_body(status, message))
        return [frame(event) for event in events]
