"""The seed's documented chat-completions example, and the 23-event stream built from it.

A copy of the data in ``tests/support/seed.py`` (the harness does not import the tests),
which matches ``shared/seed/000_36ba704ce77df802.txt`` exactly.
"""

from __future__ import annotations

from typing import Any

SEED_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What is the weather like in Paris today?"}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get current temperature for a given location.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {
                            "type": "string",
                            "description": "City and country e.g. Bogotá, Colombia",
                        }
                    },
                    "required": ["location"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        }
    ],
}

SEED_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-Ax2bU1RFE8P0Y9uqKcErQNLcx4dDe",
    "object": "chat.completion",
    "created": 1738634724,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_FezxjoWuDV1CL3dITVFOjUzK",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location":"Paris, France"}',
                        },
                    }
                ],
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 65,
        "completion_tokens": 16,
        "total_tokens": 81,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "system_fingerprint": "fp_f3927aa00d",
}

# Twenty content pieces: the streamed answer.
CONTENT = (
    "It", " is", " mild", " in", " Paris", " today", ":", " about", " 18", "°C",
    ",", " light", " clouds", " and", " a", " gentle", " breeze", " from", " the", " west.",
)  # fmt: skip
STREAM_EVENTS = 23  # a role chunk, 20 content chunks, a finish chunk and a usage chunk


def stream_request() -> dict[str, Any]:
    """The seed's request, streamed, asking for the usage chunk as OpenAI clients do."""
    return {**SEED_REQUEST, "stream": True, "stream_options": {"include_usage": True}}


def stream_chunks(include_usage: bool = True) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of the stream, in order, without ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": SEED_RESPONSE["id"],
            "object": "chat.completion.chunk",
            "created": SEED_RESPONSE["created"],
            "model": SEED_RESPONSE["model"],
            "system_fingerprint": SEED_RESPONSE["system_fingerprint"],
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None  # OpenAI sends a null usage on every chunk but the last
        return out

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": piece}) for piece in CONTENT]
    chunks.append(chunk({}, "stop"))
    if include_usage:
        usage = {**SEED_RESPONSE["usage"], "completion_tokens": len(CONTENT)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        chunks.append({**chunk({}), "choices": [], "usage": usage})
    return chunks
