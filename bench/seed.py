"""The seed's documented chat-completions example, and the 23-event stream built from it.

The request and response are read from ``tests/data/seed_example.json``, which matches
``shared/seed/000_36ba704ce77df802.txt`` exactly; the harness does not import the tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The one written-out copy, shared with the tests; the harness reads it as data.
SEED_FILE = Path(__file__).resolve().parents[1] / "tests" / "data" / "seed_example.json"
_SEED = json.loads(SEED_FILE.read_text())
SEED_REQUEST: dict[str, Any] = _SEED["request"]
SEED_RESPONSE: dict[str, Any] = _SEED["response"]

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
