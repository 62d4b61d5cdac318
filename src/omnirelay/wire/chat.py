"""The OpenAI Chat Completions shape: completing responses that upstreams leave short."""

from __future__ import annotations

from typing import Any

import orjson

USAGE_PROMPT_DETAILS = ("cached_tokens", "audio_tokens")
USAGE_COMPLETION_DETAILS = (
    "reasoning_tokens",
    "audio_tokens",
    "accepted_prediction_tokens",
    "rejected_prediction_tokens",
)


def complete_response(body: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """Fill in, in place, every field the spec or the seed marks required.

    The upstream's own values (``id``, ``created``, ``model``, unknown fields) are kept.
    """
    body.setdefault("object", "chat.completion")
    if not isinstance(body.get("system_fingerprint"), str):
        body["system_fingerprint"] = fingerprint
    for index, choice in enumerate(body.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        choice.setdefault("index", index)
        choice.setdefault("logprobs", None)
        if not isinstance(choice.get("finish_reason"), str):
            choice["finish_reason"] = "stop"
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("role", "assistant")
            message.setdefault("content", None)
            message.setdefault("refusal", None)
    body["usage"] = complete_usage(body.get("usage"))
    return body


def complete_usage(given: Any) -> dict[str, Any]:
    usage: dict[str, Any] = given if isinstance(given, dict) else {}
    for name in ("prompt_tokens", "completion_tokens"):
        if not isinstance(usage.get(name), int):
            usage[name] = 0
    if not isinstance(usage.get("total_tokens"), int):
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    usage["prompt_tokens_details"] = _zero_filled(
        usage.get("prompt_tokens_details"), USAGE_PROMPT_DETAILS
    )
    usage["completion_tokens_details"] = _zero_filled(
        usage.get("completion_tokens_details"), USAGE_COMPLETION_DETAILS
    )
    return usage


def _zero_filled(details: Any, names: tuple[str, ...]) -> dict[str, Any]:
    filled: dict[str, Any] = dict(details) if isinstance(details, dict) else {}
    for name in names:
        if not isinstance(filled.get(name), int):
            filled[name] = 0
    return filled


def usage_object(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    """A complete OpenAI usage object, for usage the gateway counted itself."""
    return complete_usage(
        {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        }
    )


def generated_text(chunks: list[dict[str, Any]]) -> str:
    """Everything the model generated across stream chunks, for counting tokens."""
    parts: list[str] = []
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            for field in ("content", "refusal", "reasoning_content"):
                value = delta.get(field)
                if isinstance(value, str):
                    parts.append(value)
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    for field in ("name", "arguments"):
                        value = function.get(field)
                        if isinstance(value, str):
                            parts.append(value)
    return "".join(parts)


def content_texts(content: Any) -> list[str]:
    """The text of an OpenAI message's ``content``: a string, or its text parts."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def prompt_text(body: dict[str, Any]) -> str:
    """The text of a request's messages and tools, for counting prompt tokens."""
    parts: list[str] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        parts.extend(content_texts(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append(str(function.get("name", "")))
                parts.append(str(function.get("arguments", "")))
    tools = body.get("tools")
    if tools:
        parts.append(orjson.dumps(tools).decode())
    return "\n".join(parts)


def message_count(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    return len(messages) if isinstance(messages, list) else 0


def response_text(body: dict[str, Any]) -> str:
    """Everything the model generated in a non-stream response, for counting tokens."""
    deltas = [
        {"choices": [{"delta": choice.get("message")}]}
        for choice in body.get("choices") or ()
        if isinstance(choice, dict)
    ]
    return generated_text(deltas)
