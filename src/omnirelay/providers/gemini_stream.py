"""Gemini's ``streamGenerateContent?alt=sse`` events, as OpenAI chunk payloads.

Each event is a whole ``GenerateContentResponse`` holding the next parts. Text parts become
content deltas, thought parts reasoning deltas, and each ``functionCall`` part one tool
call (Gemini sends a call's arguments whole, in one part). The last ``usageMetadata`` seen
becomes the usage-only chunk at the end. A blocked prompt or a safety stop ends the choice
with ``content_filter``; an in-stream error becomes OpenAI's error object.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from omnirelay.wire import gemini as wire
from omnirelay.wire.errors import GatewayError

ErrorMapper = Callable[[int, bytes, "float | None"], GatewayError]
SIGNATURE_MARK = "__ts_"


def tool_call(part: dict[str, Any], index: int, call_id: str) -> dict[str, Any]:
    call = part["functionCall"]
    arguments = orjson.dumps(call.get("args") or {}).decode()
    return {
        "index": index,
        "id": call.get("id") or call_id,
        "type": "function",
        "function": {"name": call.get("name"), "arguments": arguments},
    }


def stream_call_id(signature: Any) -> str:
    call_id = "call_" + secrets.token_hex(12)
    if isinstance(signature, str) and signature:
        return call_id + SIGNATURE_MARK + signature
    return call_id


class GeminiStream:
    def __init__(self, model: str, error: ErrorMapper) -> None:
        self._error = error
        self._id = "chatcmpl-" + secrets.token_hex(12)
        self._model = model
        self._created = int(time.time())
        self._usage: Any = None
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls so far
        self._ended = False

    def feed(self, data: bytes) -> list[bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict) or self._ended:
            return []
        if isinstance(event.get("error"), dict):
            self._ended = True
            error = event["error"]
            status = error.get("code") if isinstance(error.get("code"), int) else 500
            return [orjson.dumps(self._error(status, data, None).body())]
        if isinstance(event.get("responseId"), str):
            self._id = event["responseId"]
        if isinstance(event.get("modelVersion"), str):
            self._model = event["modelVersion"]
        if isinstance(event.get("usageMetadata"), dict):
            self._usage = event["usageMetadata"]
        out: list[bytes] = []
        candidates = event.get("candidates")
        if not candidates:
            feedback = event.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                out.extend(self._open(0))
                out.append(self._chunk(0, {}, "content_filter"))
            return out
        for position, candidate in enumerate(candidates):
            if isinstance(candidate, dict):
                out.extend(self._candidate(candidate.get("index", position), candidate))
        return out

    def finish(self) -> list[bytes]:
        if self._ended or self._usage is None:
            return []
        self._ended = True
        chunk = self._base()
        chunk["choices"] = []
        chunk["usage"] = wire.openai_usage(self._usage)
        return [orjson.dumps(chunk)]

    def _open(self, index: int) -> list[bytes]:
        if index in self._started:
            return []
        self._started.add(index)
        return [self._chunk(index, {"role": "assistant", "content": ""})]

    def _candidate(self, index: int, candidate: dict[str, Any]) -> list[bytes]:
        out = self._open(index)
        for part in (candidate.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                position = self._calls.get(index, 0)
                self._calls[index] = position + 1
                call = tool_call(part, position, stream_call_id(part.get("thoughtSignature")))
                out.append(self._chunk(index, {"tool_calls": [call]}))
            elif isinstance(part.get("text"), str) and part["text"]:
                field = "reasoning_content" if part.get("thought") else "content"
                out.append(self._chunk(index, {field: part["text"]}))
        reason = candidate.get("finishReason")
        if reason:
            finish = wire.finish_reason(reason, self._calls.get(index, 0) > 0)
            out.append(self._chunk(index, {}, finish))
        return out

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = self._base()
        chunk["choices"] = [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        ]
        return orjson.dumps(chunk)
