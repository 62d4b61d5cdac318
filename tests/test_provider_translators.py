"""The stream translators on their own: edge cases the fakes do not produce."""

from __future__ import annotations

import json
from typing import Any

from omnirelay.providers.anthropic import AnthropicProvider, encode_request
from omnirelay.providers.gemini import GeminiProvider
from omnirelay.wire.anthropic_events import MessageEvents
from omnirelay.wire.gemini import schema


def feed(translator: Any, *events: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[bytes] = []
    for event in events:
        out.extend(translator.feed(json.dumps(event).encode()))
    out.extend(translator.finish())
    return [json.loads(chunk) for chunk in out]


def test_anthropic_stream_without_message_stop_still_reports_usage() -> None:
    start = {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}}
    chunks = feed(
        AnthropicProvider().stream_translator("claude"),
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 2},
        },
    )
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
    ]
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["prompt_tokens"] == 5
    assert chunks[3]["usage"]["completion_tokens"] == 2


def test_anthropic_stream_error_event_is_an_openai_error_and_ends_it() -> None:
    start = {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 5}}
    chunks = feed(
        AnthropicProvider().stream_translator("claude"),
        {"type": "message_start", "message": start},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"type": "message_stop"},
    )
    assert chunks[-1] == {
        "error": {
            "message": "The upstream is over capacity: Overloaded",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_unavailable",
        }
    }


def test_gemini_stream_error_and_prompt_block() -> None:
    blocked = feed(
        GeminiProvider().stream_translator("g"), {"promptFeedback": {"blockReason": "SAFETY"}}
    )
    assert blocked[-1]["choices"][0]["finish_reason"] == "content_filter"
    failed = feed(
        GeminiProvider().stream_translator("g"),
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
    )
    assert failed == [
        {
            "error": {
                "message": "The upstream is over capacity: The model is overloaded.",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_unavailable",
            }
        }
    ]


def test_messages_events_reopen_text_after_a_tool_and_end_once() -> None:
    events = MessageEvents("gpt-4o")
    chunk = {"id": "chatcmpl-1", "model": "gpt-4o", "object": "chat.completion.chunk"}
    out: list[bytes] = []
    for delta, finish in [
        ({"role": "assistant", "content": "a"}, None),
        (
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
                ]
            },
            None,
        ),
        ({"content": "b"}, None),
        ({}, "tool_calls"),
    ]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        out.extend(events.feed(json.dumps({**chunk, "choices": [choice]}).encode()))
    out.extend(events.feed(b"[DONE]"))
    out.extend(events.finish())
    kinds = [line.split(b"\n")[0].removeprefix(b"event: ").decode() for line in out]
    assert kinds == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    delta = json.loads(out[-2].split(b"\ndata: ")[1])
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_encode_request_defaults_and_choices() -> None:
    body = {
        "model": "x",
        "messages": [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "temperature": 1.7,
    }
    out = encode_request(body, "claude-up", False, 1000)
    assert out["max_tokens"] == 1000 and out["temperature"] == 1.0
    assert out["system"] == [{"type": "text", "text": "rules"}]
    assert out["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_gemini_schema_subset() -> None:
    given = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "kind": {"const": "a"},
            "n": {"type": ["integer", "null"], "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}},
        },
        "required": ["kind"],
        "additionalProperties": False,
    }
    assert schema(given) == {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a"], "type": "string"},
            "n": {"type": "integer", "nullable": True, "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}},
        },
        "required": ["kind"],
    }
