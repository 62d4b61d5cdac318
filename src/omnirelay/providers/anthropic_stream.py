"""Anthropic's stream events, turned into OpenAI ``chat.completion.chunk`` payloads.

``message_start`` opens the assistant turn; each ``tool_use`` block becomes one tool call
whose ``input_json_delta`` fragments become argument deltas; ``message_delta`` carries the
stop reason; ``message_stop`` ends with OpenAI's usage-only chunk. ``ping`` is dropped and an
``error`` event becomes OpenAI's in-stream error object.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from omnirelay.wire import anthropic as wire
from omnirelay.wire.errors import GatewayError

ErrorMapper = Callable[[int, bytes, "float | None"], GatewayError]

# Anthropic's error type -> the HTTP status it stands for, to map stream errors alike.
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicStream:
    def __init__(self, model: str, error: ErrorMapper) -> None:
        self._error = error
        self._id = "msg_unknown"
        self._model = model
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._started = False
        self._finished = False

    def feed(self, data: bytes) -> list[bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_start":
            return self._message_start(event.get("message"))
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self._stop()
        if kind == "error":
            return [self._stream_error(event.get("error"))]
        return []  # ping, content_block_stop and event types added later

    def finish(self) -> list[bytes]:
        # A stream that ended without message_stop still reports what it consumed.
        return self._stop() if self._started else []

    # -- events ----------------------------------------------------------------------------

    def _message_start(self, message: Any) -> list[bytes]:
        if not isinstance(message, dict):
            return []
        self._started = True
        self._id = str(message.get("id") or self._id)
        self._model = str(message.get("model") or self._model)
        if isinstance(message.get("usage"), dict):
            self._usage.update(message["usage"])
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        block = event.get("content_block")
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "tool_use":
            position = len(self._tools)
            self._tools[event.get("index", -1)] = position
            call = {
                "index": position,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text") or ""})]
        if kind == "input_json_delta":
            position = self._tools.get(event.get("index", -1))
            fragment = delta.get("partial_json")
            if position is None or not fragment:
                return []
            call = {"index": position, "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking") or ""})]
        return []  # signature_delta, citations_delta

    def _message_delta(self, event: dict[str, Any]) -> list[bytes]:
        usage = event.get("usage")
        if isinstance(usage, dict):
            # message_delta's counts are cumulative: they replace what came before.
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = event.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if reason is None:
            return []
        return [self._chunk({}, wire.finish_reason(reason))]

    def _stop(self) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        chunk = self._base()
        chunk["choices"] = []
        chunk["usage"] = wire.openai_usage(self._usage)
        return [orjson.dumps(chunk)]

    def _stream_error(self, error: Any) -> bytes:
        error = error if isinstance(error, dict) else {}
        status = ERROR_STATUSES.get(str(error.get("type")), 500)
        payload = orjson.dumps({"type": "error", "error": error})
        self._finished = True  # nothing more will come; no usage chunk after an error
        return orjson.dumps(self._error(status, payload, None).body())

    # -- chunks ----------------------------------------------------------------------------

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = self._base()
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        return orjson.dumps(chunk)
