"""OpenAI ``chat.completion.chunk`` payloads, told as Gemini's ``streamGenerateContent``
events (``alt=sse``).

A chunk with new text becomes one event whose candidate holds it (reasoning as a
``thought`` part). Gemini sends a function call whole, so the fragments of each tool call
are gathered, and the calls leave as ``functionCall`` parts in the last event, with the
``finishReason`` and the ``usageMetadata`` (the usage chunk comes after the finish, and the
last event is sent at ``[DONE]``). An error becomes Google's error object.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.wire import sse
from omnirelay.wire.gemini_answers import error_body, finish_reason, function_call, usage_metadata

STREAM_ERRORS = {"upstream_unavailable": 503, "upstream_timeout": 504}


def frame(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\r\n\r\n"


class GeminiEvents:
    def __init__(self, model: str) -> None:
        self._model = model
        self._id = ""
        self._ended = False
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool index -> call
        self._finished: dict[int, str] = {}  # choice -> OpenAI finish_reason
        self._usage: dict[str, Any] | None = None

    def feed(self, payload: bytes) -> list[bytes]:
        if self._ended:
            return []
        if payload == sse.DONE:
            return self.finish()
        chunk = sse.json_object(payload)
        if chunk is None:
            return []
        error = chunk.get("error")
        if isinstance(error, dict):
            status = STREAM_ERRORS.get(str(error.get("code")), 500)
            return [self.error(status, str(error.get("message") or "The upstream failed."))]
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        if isinstance(chunk.get("id"), str):
            self._id = chunk["id"]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        candidates = [
            candidate
            for choice in chunk.get("choices") or ()
            if isinstance(choice, dict) and (candidate := self._choice(choice)) is not None
        ]
        return [self._event({"candidates": candidates})] if candidates else []

    def finish(self) -> list[bytes]:
        """The last event: gathered calls, finish reasons, usage."""
        if self._ended:
            return []
        self._ended = True
        candidates: list[dict[str, Any]] = []
        for index in sorted({0, *self._finished, *self._calls}):
            calls = self._calls.get(index, {})
            parts = [part for n in sorted(calls) if (part := function_call(calls[n])) is not None]
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts or [{"text": ""}]},
                    "finishReason": finish_reason(self._finished.get(index, "stop")),
                    "index": index,
                }
            )
        event: dict[str, Any] = {"candidates": candidates}
        if self._usage is not None:
            event["usageMetadata"] = usage_metadata(self._usage)
        return [self._event(event)]

    def error(self, status: int, message: str) -> bytes:
        self._ended = True
        return frame(error_body(status, message))

    def _choice(self, choice: dict[str, Any]) -> dict[str, Any] | None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        delta = _obj(choice.get("delta"))
        parts: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"text": reasoning, "thought": True})
        for name in ("content", "refusal"):
            text = delta.get(name)
            if isinstance(text, str) and text:
                parts.append({"text": text})
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._gather(index, call)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._finished[index] = reason
        if not parts:
            return None
        return {"content": {"role": "model", "parts": parts}, "index": index}

    def _gather(self, choice: int, fragment: dict[str, Any]) -> None:
        position = fragment.get("index", 0)
        calls = self._calls.setdefault(choice, {})
        call = calls.setdefault(
            position if isinstance(position, int) else 0,
            {"id": None, "function": {"name": "", "arguments": ""}},
        )
        if isinstance(fragment.get("id"), str):
            call["id"] = fragment["id"]
        function = _obj(fragment.get("function"))
        if isinstance(function.get("name"), str) and function["name"]:
            call["function"]["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]

    def _event(self, event: dict[str, Any]) -> bytes:
        event["modelVersion"] = self._model
        event["responseId"] = self._id
        return frame(event)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
