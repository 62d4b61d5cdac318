"""Google's Gemini API, outbound to its clients: the canonical answers in Gemini's shapes.

A chat completion becomes a ``GenerateContentResponse`` (reasoning as ``thought`` parts,
tool calls as ``functionCall`` parts with their ids, ``finishReason``, ``usageMetadata``),
embeddings become ``embedding`` / ``embeddings`` values, models Gemini's ``Model``, and
errors Google's ``{"error": {"code", "message", "status"}}`` with the same HTTP status.
"""

from __future__ import annotations

import json
from typing import Any

# OpenAI's finish_reason -> Gemini's finishReason.
FINISH_REASONS = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "tool_calls": "STOP",
    "function_call": "STOP",
}
# The gateway's HTTP statuses -> Google's canonical status names.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GENERATE_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
EMBED_METHODS = ["embedContent", "batchEmbedContents", "countTokens"]


def error_body(status: int, message: str) -> dict[str, Any]:
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": name}}


def finish_reason(reason: Any) -> str:
    return FINISH_REASONS.get(reason, "OTHER") if isinstance(reason, str) else "STOP"


def usage_metadata(usage: Any) -> dict[str, Any]:
    """OpenAI's usage as ``usageMetadata``: reasoning tokens are ``thoughtsTokenCount``."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = _obj(usage.get("completion_tokens_details"))
    thoughts = min(_count(details.get("reasoning_tokens")), completion)
    cached = _count(_obj(usage.get("prompt_tokens_details")).get("cached_tokens"))
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion - thoughts,
        "totalTokenCount": prompt + completion,
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    if cached:
        metadata["cachedContentTokenCount"] = cached
    return metadata


def function_call(call: Any) -> dict[str, Any] | None:
    """An OpenAI tool call as a ``functionCall`` part; its id rides along."""
    function = _obj(call.get("function")) if isinstance(call, dict) else {}
    if not function:
        return None
    out: dict[str, Any] = {"name": function.get("name") or "", "args": arguments(function)}
    if isinstance(call, dict) and isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return {"functionCall": out}


def arguments(function: dict[str, Any]) -> dict[str, Any]:
    text = function.get("arguments")
    try:
        parsed = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_gemini(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion as a ``GenerateContentResponse``."""
    candidates: list[dict[str, Any]] = []
    for position, choice in enumerate(data.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        message = _obj(choice.get("message"))
        parts: list[dict[str, Any]] = []
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"text": reasoning, "thought": True})
        for name in ("content", "refusal"):
            text = message.get(name)
            if isinstance(text, str) and text:
                parts.append({"text": text})
        for call in message.get("tool_calls") or ():
            part = function_call(call)
            if part is not None:
                parts.append(part)
        candidates.append(
            {
                "content": {"role": "model", "parts": parts or [{"text": ""}]},
                "finishReason": finish_reason(choice.get("finish_reason")),
                "index": choice.get("index", position),
            }
        )
    return {
        "candidates": candidates,
        "usageMetadata": usage_metadata(data.get("usage")),
        "modelVersion": data.get("model") or model,
        "responseId": data.get("id") or "",
    }


def embedding_values(data: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's embeddings list as Gemini's ``ContentEmbedding`` values, in input order."""
    items = [item for item in data.get("data") or () if isinstance(item, dict)]
    items.sort(key=lambda item: item.get("index", 0))
    return [{"values": item.get("embedding") or []} for item in items]


def model_object(model: str) -> dict[str, Any]:
    embedding = "embed" in model.lower()
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "omnirelay",
        "displayName": model,
        "supportedGenerationMethods": EMBED_METHODS if embedding else GENERATE_METHODS,
    }


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
