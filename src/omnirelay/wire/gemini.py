"""What Google's Gemini API (``generateContent``) shares with OpenAI's chat shape.

Finish reasons, usage, and the JSON-schema subset Gemini's ``Schema`` accepts.
"""

from __future__ import annotations

from typing import Any

# Gemini's finishReason -> OpenAI's finish_reason; every block reason is a content filter.
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
}

# JSON Schema keywords that Gemini's Schema object knows; everything else is dropped.
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "propertyOrdering",
        "default",
        "example",
    }
)


def finish_reason(reason: Any, called_tools: bool) -> str:
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and called_tools else mapped


def openai_usage(metadata: Any) -> dict[str, Any]:
    """Gemini's ``usageMetadata`` -> OpenAI usage; thinking tokens are completion tokens."""
    metadata = metadata if isinstance(metadata, dict) else {}
    prompt = _count(metadata.get("promptTokenCount")) + _count(
        metadata.get("toolUsePromptTokenCount")
    )
    thoughts = _count(metadata.get("thoughtsTokenCount"))
    completion = _count(metadata.get("candidatesTokenCount")) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": _count(metadata.get("cachedContentTokenCount")),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": thoughts,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def schema(node: Any) -> Any:
    """A JSON Schema as Gemini's Schema subset: known keywords only, one type per node."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        kind = kinds[0] if kinds else "null"
    if kind is not None:
        out["type"] = kind
    if "const" in node and "enum" not in node:
        out["enum"] = [node["const"]]
    for key, value in node.items():
        if key not in SCHEMA_KEYS or key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [schema(sub) for sub in value]
        else:
            out[key] = value
    if "enum" in out:
        out["enum"] = [str(item) for item in out["enum"]]  # Gemini's enums are strings
        out.setdefault("type", "string")
    return out


def has_parameters(parameters: Any) -> bool:
    """Whether a tool's parameters declare anything; Gemini refuses an empty OBJECT."""
    if not isinstance(parameters, dict) or not parameters:
        return False
    kind = parameters.get("type", "object")
    return not (kind == "object" and not parameters.get("properties"))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
