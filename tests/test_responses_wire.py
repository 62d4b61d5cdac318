"""The Responses codec on its own: requests to the canonical chat body, chat answers and
chunks back to Responses objects and events, each checked against the spec and the SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from omnirelay.wire import responses as shape
from omnirelay.wire import responses_chat
from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.responses_events import ResponseEvents
from support import openapi

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
PNG = "data:image/png;base64,iVBORw0KGgo="


def chat_of(body: dict[str, Any]) -> dict[str, Any]:
    request = shape.check_request(body)
    return responses_chat.to_chat(body, shape.input_items(body.get("input")), request.model)


def started(body: dict[str, Any]) -> dict[str, Any]:
    return shape.response_object(body, shape.check_request(body), "resp_test", 1_700_000_000)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({"id": "c", "model": "m-1", "choices": [choice], **extra}).encode()


def checked(frames: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for frame in frames:
        name, data = frame.decode().strip().split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == "event: " + event["type"]
        openapi.validate_response("POST", "/v1/responses", 200, event, "text/event-stream")
        EVENTS.validate_python(event)
        events.append(event)
    return events


# -- requests -------------------------------------------------------------------------------


def test_items_become_chat_messages() -> None:
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": PNG, "detail": "low"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": "data:..."},
                ],
            },
            {"role": "assistant", "content": "A picture."},
            {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "look", "arguments": '{"x":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "two"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
        "max_output_tokens": 64,
        "temperature": 0.2,
        "reasoning": {"effort": "low"},
        "stream": True,
    }
    chat = chat_of(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                {"type": "file", "file": {"file_data": "data:...", "filename": "a.pdf"}},
            ],
        },
        {
            "role": "assistant",
            "content": "A picture.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}},
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"x":1}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert (chat["max_completion_tokens"], chat["temperature"]) == (64, 0.2)
    assert chat["reasoning_effort"] == "low"
    assert chat["stream_options"] == {"include_usage": True}


def test_tools_formats_and_choices() -> None:
    function = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
    other = {**function, "name": "g"}
    chat = chat_of(
        {
            "model": "m",
            "input": "x",
            "tools": [function, other],
            "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"name": "g"}]},
            "parallel_tool_calls": False,
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}
            },
        }
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "g", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("required", False)
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}},
    }
    named = chat_of(
        {
            "model": "m",
            "input": "x",
            "tools": [function],
            "tool_choice": {"type": "function", "name": "f"},
        }
    )
    assert named["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    json_mode = chat_of({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})
    assert json_mode["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0]"),
        (
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "web_search_preview"},
            },
            "tool_choice",
        ),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}, "input[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": PNG}],
                    }
                ]
            },
            "input[0].output",
        ),
    ],
)
def test_what_only_openai_runs_is_a_clear_400_elsewhere(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        chat_of({"model": "m", "input": "x", **body})
    assert refused.value.param == param and refused.value.status == 400


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "background": True, "stream": True}, "stream"),
        ({"input": "x", "background": True, "store": False}, "store"),
        ({"input": "x", "background": "yes"}, "background"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({}, "input"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "call_id": "c"}]}, "input[0].name"),
    ],
)
def test_requests_the_gateway_refuses(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        request = shape.check_request({"model": "m", **body})
        shape.input_items(body.get("input"))
        assert request
    assert refused.value.param == param


def test_stored_items_go_upstream_as_input_any_responses_api_takes() -> None:
    items = shape.input_items(
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ]
    )
    assert all(item["id"] for item in items)
    as_input = [shape.as_input(item) for item in items]
    assert as_input == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "message", "role": "assistant", "content": "hello"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ]
    openapi.validate_schema("CreateResponse", {"model": "gpt-4o", "input": as_input})
    listing = {"object": "list", "data": items, "first_id": "a", "last_id": "b", "has_more": False}
    openapi.validate_schema("ResponseItemList", listing)


# -- answers --------------------------------------------------------------------------------


def test_a_chat_answer_becomes_a_response() -> None:
    body = {"model": "m", "input": "x", "metadata": {"k": "v"}}
    data = {
        "model": "m-1",
        "choices": [
            {
                "message": {
                    "content": "Hello.",
                    "reasoning_content": "Thinking.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    response = responses_chat.from_chat(data, started(body))
    openapi.validate_schema("Response", response)
    Response.model_validate(response)
    assert [item["type"] for item in response["output"]] == [
        "reasoning",
        "message",
        "function_call",
    ]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    assert shape.chat_usage(response["usage"]) == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    assert response["metadata"] == {"k": "v"} and response["model"] == "m-1"


def test_chat_chunks_become_the_documented_event_stream() -> None:
    events = ResponseEvents(started({"model": "m", "input": "x"}))
    frames: list[bytes] = []
    for payload in (
        chunk({"role": "assistant", "reasoning_content": "Hmm, "}),
        chunk({"reasoning_content": "yes."}),
        chunk({"content": "Sure"}),
        chunk({"content": "!"}),
        chunk({"refusal": "But not that."}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        json.dumps(
            {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}
        ).encode(),
        b"[DONE]",
    ):
        frames.extend(events.feed(payload))
    parsed = checked(frames)
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    kinds = [e["type"] for e in parsed]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert (
        kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 5
    )
    assert "response.reasoning_text.delta" in kinds and "response.refusal.done" in kinds
    final = parsed[-1]
    assert final["type"] == "response.completed"
    assert [item["type"] for item in final["response"]["output"]] == [
        "reasoning",
        "message",
        "message",
        "function_call",
        "function_call",
    ]
    calls = final["response"]["output"][3:]
    assert [(c["call_id"], c["arguments"]) for c in calls] == [
        ("call_a", '{"a":1}'),
        ("call_b", "{}"),
    ]
    assert final["response"]["usage"]["output_tokens"] == 9
    assert final["response"]["model"] == "m-1"
    assert events.ended and events.feed(chunk({"content": "late"})) == []


def test_a_broken_stream_ends_with_error_and_response_failed() -> None:
    events = ResponseEvents(started({"model": "m", "input": "x"}))
    frames = events.feed(chunk({"content": "Half"}))
    body = {
        "error": {
            "message": "upstream fell over",
            "type": "server_error",
            "code": "x",
            "param": None,
        }
    }
    frames += events.fail(502, body)
    parsed = checked(frames)
    error, failed = parsed[-2:]
    assert (error["type"], error["message"]) == ("error", "upstream fell over")
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream fell over"}
    assert failed["response"]["output"][0]["status"] == "incomplete"
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    assert events.fail(502, body) == []
    limited = checked(ResponseEvents(started({"model": "m", "input": "x"})).fail(429, body))
    assert [e["type"] for e in limited] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert limited[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
