"""What the Anthropic Messages API and OpenAI's chat shape share, in both directions.

Stop reasons, usage and error types are mapped here once, so the outbound provider and the
inbound ``/v1/messages`` surface agree on every value.
"""

from __future__ import annotations

from typing import Any

# Anthropic's stop_reason -> OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# OpenAI's finish_reason -> Anthropic's stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# HTTP status -> Anthropic error type (https://docs.claude.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def stop_reason(finish: Any, *, used_tools: bool = False) -> str:
    """Anthropic's stop reason for OpenAI's ``finish``.

    OpenAI finishes with ``stop``, not ``tool_calls``, when a named function was forced
    through ``tool_choice``; an answer that calls tools stopped for them all the same.
    """
    reason = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    return "tool_use" if used_tools and reason == "end_turn" else reason


def error_type(status: int) -> str:
    found = ERROR_TYPES.get(status)
    if found:
        return found
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage.

    Anthropic's ``input_tokens`` leaves out cache reads and cache writes; OpenAI's
    ``prompt_tokens`` includes every input token, and ``cached_tokens`` is the reads.
    """
    usage = usage if isinstance(usage, dict) else {}
    reads = _count(usage.get("cache_read_input_tokens"))
    writes = _count(usage.get("cache_creation_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + reads + writes
    completion = _count(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        # Cache writes are billed at their own price, so they travel separately too.
        "prompt_tokens_details": {
            "cached_tokens": reads,
            "audio_tokens": 0,
            "cache_write_tokens": writes,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def anthropic_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage (the inverse of :func:`openai_usage`)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    reads = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(usage.get("prompt_tokens"))
    return {
        "input_tokens": max(prompt - reads, 0),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reads,
    }
