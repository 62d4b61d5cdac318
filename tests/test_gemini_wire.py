"""The Gemini codecs on their own: what a request becomes, and what an answer is told as."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.gemini_answers import error_body, to_gemini, usage_metadata
from omnirelay.wire.gemini_events import GeminiEvents
from omnirelay.wire.gemini_inbound import (
    batch_embed_to_openai,
    json_schema,
    reasoning_fields,
    to_openai,
)


def test_fields_are_read_under_either_name() -> None:
    body = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png",
                                                                  "data": "AAAA"}}]}],
        "generation_config": {"max_output_tokens": "64", "stop_sequences": ["###"]},
    }  # fmt: skip
    out = to_openai("m", body, stream=True).body
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
        },
    ]
    assert (out["max_tokens"], out["stop"]) == (64, ["###"])
    assert out["stream_options"] == {"include_usage": True}


def test_responses_answer_calls_by_id_then_by_name_in_order() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "q"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "f", "args": {"n": 1}}},
                {"functionCall": {"name": "f", "args": {"n": 2}}},
                {"functionCall": {"name": "g", "args": {}, "id": "given"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "g", "response": {"r": 3}, "id": "given"}},
                {"functionResponse": {"name": "f", "response": {"r": 1}}},
                {"functionResponse": {"name": "f", "response": {"r": 2}}},
                {"text": "and?"},
            ],
        },
    ]
    messages = to_openai("m", {"contents": contents}, stream=False).body["messages"]
    calls = messages[1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"n": 1}, {"n": 2}, {}]
    assert calls[2]["id"] == "given"
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "tool", "user"]
    assert [m["tool_call_id"] for m in messages[2:5]] == [calls[2]["id"], calls[0]["id"],
                                                          calls[1]["id"]]  # fmt: skip
    assert messages[3]["content"] == '{"r":1}' and messages[5]["content"] == "and?"


def test_what_only_gemini_serves_is_listed_not_refused() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [
                {"fileData": {"mimeType": "video/mp4",
                              "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/x"}},
                {"text": "summarize"},
            ]},
            {"role": "model", "parts": [{"executableCode": {"code": "1+1"}}]},
        ],
        "tools": [{"googleSearch": {}}, {"functionDeclarations": [{"name": "f"}]}],
        "cachedContent": "cachedContents/abc",
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
    }  # fmt: skip
    inbound = to_openai("m", body, stream=False)
    assert inbound.native_only == [
        "contents[0].parts[0].fileData",
        "contents[1].parts[0]",
        "tools[0].googleSearch",
        "generationConfig.responseModalities",
        "cachedContent",
    ]
    assert [t["function"]["name"] for t in inbound.body["tools"]] == ["f"]


def test_gemini_schemas_become_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "type": {"type": "STRING", "nullable": True, "enum": ["a", "b"]},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "max_items": "3"},
        },
        "required": ["type"],
        "propertyOrdering": ["type", "tags"],
    }
    assert json_schema(schema) == {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": ["string", "null"], "enum": ["a", "b"]},
            "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
        },
    }


@pytest.mark.parametrize(
    ("config", "dialect", "max_tokens", "fields"),
    [
        ({"thinkingBudget": 0}, "openai", None, {}),
        ({"thinkingBudget": -1}, "anthropic", None, {}),
        ({"thinking_budget": 512}, "openai", None, {"reasoning_effort": "low"}),
        ({"thinkingBudget": 4000}, "azure", None, {"reasoning_effort": "medium"}),
        ({"thinkingLevel": "HIGH"}, "openai", None, {"reasoning_effort": "high"}),
        ({"thinkingBudget": 100}, "anthropic", 2000,
         {"thinking": {"type": "enabled", "budget_tokens": 1024}}),
        ({"thinkingBudget": 5000}, "anthropic", 2000, {}),
        ({"thinkingBudget": 5000}, "deepseek", None, {}),
    ],
)  # fmt: skip
def test_thinking_config_per_dialect(
    config: dict[str, Any], dialect: str, max_tokens: int | None, fields: dict[str, Any]
) -> None:
    assert reasoning_fields(config, dialect, max_tokens) == fields


def test_bad_requests_are_clear_400s() -> None:
    with pytest.raises(InvalidRequest, match="contents"):
        to_openai("m", {"contents": []}, stream=False)
    with pytest.raises(InvalidRequest, match="role"):
        to_openai("m", {"contents": [{"role": "system", "parts": []}]}, stream=False)
    with pytest.raises(InvalidRequest, match="maxOutputTokens"):
        hello = [{"parts": [{"text": "x"}]}]
        to_openai("m", {"contents": hello, "generationConfig": {"maxOutputTokens": 0}}, False)
    with pytest.raises(InvalidRequest, match="video/mp4"):
        video = [{"parts": [{"inlineData": {"mimeType": "video/mp4", "data": "AA"}}]}]
        to_openai("m", {"contents": video}, stream=False)
    with pytest.raises(InvalidRequest, match="same size"):
        requests = [
            {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
            {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8},
        ]
        batch_embed_to_openai("m", {"requests": requests})
    with pytest.raises(InvalidRequest, match="models/m"):
        batch_embed_to_openai(
            "m", {"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]}
        )


def test_a_completion_is_told_as_a_generate_content_response() -> None:
    completion = {
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {
                    "content": "partial",
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {"id": "call_1", "function": {"name": "f", "arguments": '{"a":1}'}},
                        {"id": "call_2", "function": {"name": "g", "arguments": "not json"}},
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    assert to_gemini(completion, "asked") == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "hmm", "thought": True},
                        {"text": "partial"},
                        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "call_1"}},
                        {"functionCall": {"name": "g", "args": {}, "id": "call_2"}},
                    ],
                },
                "finishReason": "MAX_TOKENS",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "totalTokenCount": 17,
            "thoughtsTokenCount": 2,
            "cachedContentTokenCount": 4,
        },
        "modelVersion": "gpt-4o",
        "responseId": "chatcmpl-1",
    }
    assert usage_metadata(None) == {
        "promptTokenCount": 0,
        "candidatesTokenCount": 0,
        "totalTokenCount": 0,
    }
    assert error_body(429, "slow down") == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    }


def test_chunks_become_events_and_calls_leave_whole_at_the_end() -> None:
    events = GeminiEvents("asked")

    def feed(chunk: dict[str, Any] | bytes) -> list[dict[str, Any]]:
        payload = chunk if isinstance(chunk, bytes) else orjson.dumps(chunk)
        out = events.feed(payload)
        assert all(e.startswith(b"data: ") and e.endswith(b"\r\n\r\n") for e in out)
        return [json.loads(e[6:]) for e in out]

    def delta(**fields: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": fields, "finish_reason": fields.pop("finish", None)}
        return {"id": "c1", "model": "gpt-4o", "choices": [choice]}

    assert feed(delta(role="assistant", content="")) == []
    [text] = feed(delta(content="Hello"))
    assert text["candidates"][0]["content"]["parts"] == [{"text": "Hello"}]
    assert (text["modelVersion"], text["responseId"]) == ("gpt-4o", "c1")
    first = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}
    assert feed(delta(tool_calls=[first])) == []
    rest = {"index": 0, "function": {"arguments": ":1}"}}
    assert feed(delta(tool_calls=[rest], finish="tool_calls")) == []
    assert feed({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3,
                                                      "completion_tokens": 4}}) == []  # fmt: skip
    [last] = feed(b"[DONE]")
    assert last["candidates"] == [
        {
            "content": {
                "role": "model",
                "parts": [{"functionCall": {"name": "f", "args": {"a": 1}, "id": "call_1"}}],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert last["usageMetadata"]["candidatesTokenCount"] == 4
    assert feed(delta(content="late")) == []
