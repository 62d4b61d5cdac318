"""The seed's documented chat-completions example (`shared/seed/000_36ba704ce77df802.txt`).

The seed file is documentation prose, so the request and the response are written out here,
matching it exactly. Treat both dicts as read-only; deep-copy before changing them.
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
