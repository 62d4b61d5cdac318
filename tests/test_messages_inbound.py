"""anthropic SDK -> gateway /v1/messages -> the fake OpenAI upstream, and back."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from support.constants import CLIENT_TIMEOUT_S
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway
from support.media import PNG_BASE64 as PNG

MODEL = "gpt-4o"
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [
    {"name": "get_weather", "description": "Weather in a city.", "input_schema": CITY},
    {"name": "get_time", "description": "Time in a city.", "input_schema": CITY},
    {"name": "get_location", "input_schema": {"type": "object", "properties": {}}},
]


def claude(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def raw_events(gateway: Gateway, key: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream's events as sent, each checked against the SDK's event types."""
    response = httpx.post(
        gateway.url + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={**body, "stream": True},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    names: list[str] = []
    events: list[dict[str, Any]] = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        event_line, data_line = block.split("\n")  # Anthropic's framing: event, then data
        names.append(event_line.removeprefix("event: "))
        events.append(json.loads(data_line.removeprefix("data: ")))
    assert names == [event["type"] for event in events]
    for event in events:
        if event["type"] not in ("ping", "error"):
            EVENTS.validate_python(event)
    return events


def test_text_with_system_prompt(gateway: Gateway, fake: FakeOpenAI, api_key: str) -> None:
    message = claude(gateway, api_key).messages.create(
        model=MODEL,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello there"}],
        stop_sequences=["###"],
    )
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == "Echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.model == "gpt-4o-2024-08-06"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3
    sent = fake.received[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
    ]
    assert (sent["max_tokens"], sent["stop"]) == (100, ["###"])


def test_stream_text(gateway: Gateway, fake: FakeOpenAI, api_key: str) -> None:
    with claude(gateway, api_key).messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: one two three"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert final.usage.input_tokens > 0
    assert fake.received[-1].body["stream_options"] == {"include_usage": True}
    events = raw_events(
        gateway,
        api_key,
        {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "a b"}]},
    )
    kinds = [event["type"] for event in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_parallel_tools_and_a_tool_without_parameters(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    message = claude(gateway, api_key).messages.create(
        model=MODEL,
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "weather, time and place"}],
    )
    Message.model_validate(message.model_dump())
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [
        ("get_weather", {"city": "example city"}),
        ("get_time", {"city": "example city"}),
        ("get_location", {}),
    ]
    assert message.stop_reason == "tool_use"
    sent = fake.received[-1].body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][2] == {
        "type": "function",
        "function": {"name": "get_location", "parameters": {"type": "object", "properties": {}}},
    }


def test_stream_tools_arguments_arrive_in_many_deltas(gateway: Gateway, api_key: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 200,
        "tools": TOOLS,
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "weather, time and place"}],
    }
    events = raw_events(gateway, api_key, body)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [s["content_block"]["name"] for s in starts] == [
        "get_weather",
        "get_time",
        "get_location",
    ]
    assert [s["index"] for s in starts] == [0, 1, 2]
    fragments: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for event in events:
        if event["type"] == "content_block_delta":
            assert event["delta"]["type"] == "input_json_delta"
            fragments[event["index"]].append(event["delta"]["partial_json"])
    assert len(fragments[0]) >= 3 and len(fragments[1]) >= 3
    assert json.loads("".join(fragments[0])) == {"city": "example city"}
    assert json.loads("".join(fragments[2])) == {}
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] > 0
    with claude(gateway, api_key).messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert [b.input for b in final.content if b.type == "tool_use"] == [
        {"city": "example city"},
        {"city": "example city"},
        {},
    ]


def test_tool_result_turn(gateway: Gateway, fake: FakeOpenAI, api_key: str) -> None:
    message = claude(gateway, api_key).messages.create(
        model=MODEL,
        max_tokens=100,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "weather and place"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                    {"type": "tool_use", "id": "call_2", "name": "get_location", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "4 degrees"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "Oslo"}],
                        "is_error": False,
                    },
                    {"type": "text", "text": "so, a coat?"},
                ],
            },
        ],
    )
    assert message.content[0].type == "text" and message.content[0].text == "Echo: so, a coat?"
    sent = fake.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert sent[1]["content"] == "Let me look."
    assert sent[1]["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "4 degrees"}
    assert sent[3]["content"] == "Oslo"


def test_images_by_base64_and_url(gateway: Gateway, fake: FakeOpenAI, api_key: str) -> None:
    claude(gateway, api_key).messages.create(
        model=MODEL,
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                ],
            }
        ],
    )
    parts = fake.received[-1].body["messages"][0]["content"]
    assert parts == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_upstream_errors_take_anthropics_shape(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    group = "messages-errors"
    gateway.add_channel(
        name=group,
        type="openai",
        base_url=fake.base_url,
        api_key=fake.api_key,
        models=[MODEL],
        group=group,
    )
    client = claude(gateway, make_key(group=group))
    hello: Any = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    fake.fail_next(429)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(**hello)
    body = overloaded.value.response.json()
    assert overloaded.value.status_code == 503
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    fake.fail_next(400, "Invalid value for 'temperature'.")
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(**hello)
    assert bad.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "Invalid value for 'temperature'."},
        "request_id": bad.value.response.headers["request-id"],
    }
    fake.fail_next(500)
    with pytest.raises(anthropic.InternalServerError), client.messages.stream(**hello) as stream:
        stream.get_final_message()


def test_gateway_errors_take_anthropics_shape(gateway: Gateway, api_key: str) -> None:
    def post(body: Any, **headers: str) -> httpx.Response:
        sent = {"x-api-key": api_key, "anthropic-version": "2023-06-01", **headers}
        return httpx.post(gateway.url + "/v1/messages", headers=sent, json=body, timeout=30)

    def error(response: httpx.Response, status: int, kind: str) -> str:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == kind
        assert response.headers["x-request-id"] == body["request_id"]
        return str(body["error"]["message"])

    hello: Any = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    error(post(hello, **{"x-api-key": "sk-wrong"}), 401, "authentication_error")
    assert "max_tokens" in error(post({**hello, "max_tokens": None}), 400, "invalid_request_error")
    error(post({**hello, "model": "claude-nope"}), 404, "not_found_error")
    assert "Extra" not in error(post({**hello, "messages": []}), 400, "invalid_request_error")
    ok = post(hello)
    assert ok.status_code == 200 and ok.json()["content"][0]["text"] == "Echo: hi"


def test_count_tokens(gateway: Gateway, api_key: str) -> None:
    client = claude(gateway, api_key)
    counted = client.messages.count_tokens(
        model=MODEL, system="Be brief.", messages=[{"role": "user", "content": "hello there"}]
    )
    longer = client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "hello there " * 50}], tools=TOOLS
    )
    assert 0 < counted.input_tokens < longer.input_tokens


def test_a_forced_tool_is_a_tool_use_stop_streamed_or_not(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    # OpenAI answers a named, forced function with finish_reason "stop", not "tool_calls";
    # Anthropic's clients loop on stop_reason "tool_use", so the message must say that.
    body: Any = {
        "model": MODEL,
        "max_tokens": 200,
        "tools": TOOLS,
        "tool_choice": {"type": "tool", "name": "get_time"},
        "messages": [{"role": "user", "content": "time in Oslo"}],
    }
    client = claude(gateway, api_key)
    message = client.messages.create(**body)
    assert fake.received[-1].body["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_time"},
    }
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [
        ("tool_use", "get_time")
    ]
    assert message.stop_reason == "tool_use"
    with client.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["tool_use"]
    assert final.stop_reason == "tool_use"
    delta = next(e for e in raw_events(gateway, api_key, body) if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


def _stream_usage(gateway: Gateway, key: str, body: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The usage of message_start and message_delta as sent, and the SDK's final usage."""
    events = raw_events(gateway, key, body)
    start = next(e for e in events if e["type"] == "message_start")["message"]["usage"]
    delta = next(e for e in events if e["type"] == "message_delta")["usage"]
    with claude(gateway, key).messages.stream(**body) as stream:
        final = stream.get_final_message()
    return start, delta, final.usage


def test_stream_tells_input_tokens_at_the_start_and_output_tokens_at_the_end(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    body: Any = {
        "model": MODEL,
        "max_tokens": 100,
        "system": "Be brief.",
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "four words come back"}],
    }
    counted = claude(gateway, api_key).messages.count_tokens(
        model=MODEL, system=body["system"], tools=TOOLS, messages=body["messages"]
    )
    start, delta, final = _stream_usage(gateway, api_key, body)
    # message_start carries the gateway's count of the prompt, as count_tokens gives it.
    assert start["input_tokens"] == counted.input_tokens > 0
    # message_delta carries the upstream's counts: "Echo: four words come back" is 5 tokens.
    assert delta["output_tokens"] == 5
    assert fake.received[-1].body["stream_options"] == {"include_usage": True}
    assert final.input_tokens > 0 and final.output_tokens == 5


def test_stream_without_upstream_usage_keeps_the_counted_input_tokens(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    fake.omit_stream_usage = True
    body: Any = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    start, _delta, final = _stream_usage(gateway, api_key, body)
    assert start["input_tokens"] > 0
    assert final.input_tokens == start["input_tokens"]


def test_stream_without_upstream_usage_still_tells_output_tokens(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    fake.omit_stream_usage = True
    body: Any = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    _start, delta, final = _stream_usage(gateway, api_key, body)
    assert delta["output_tokens"] > 0 and final.output_tokens > 0
