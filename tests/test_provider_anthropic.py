"""openai SDK -> gateway -> Anthropic Messages API (the faithful fake), and the fake itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_anthropic import FakeAnthropic
from support.gateway import Gateway
from support.media import PNG_BASE64 as PNG
from support.sse import chunks_of

MODEL = "claude-sonnet-4-0"
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)

WEATHER_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Look up the {name[4:]} for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city", "unit"],
            },
        },
    }
    for name in ("get_weather", "get_time")
] + [{"type": "function", "function": {"name": "get_location", "description": "Where am I?"}}]


@pytest.fixture(scope="module")
def claude(gateway: Gateway) -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        gateway.add_channel(
            name="anthropic-main",
            type="anthropic",
            base_url=server.base_url,
            api_key=server.api_key,
            models=[MODEL],
        )
        yield server


@pytest.fixture(autouse=True)
def _reset(claude: FakeAnthropic) -> None:
    claude.reset()


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def validate_chunks(chunks: list[Any]) -> None:
    for chunk in chunks:
        body = chunk.model_dump(mode="json", exclude_unset=True)
        openapi.validate_schema("CreateChatCompletionStreamResponse", body)


# -- the fake itself ---------------------------------------------------------------------------


def test_fake_speaks_the_sdk_types_and_rejects_what_anthropic_rejects(
    claude: FakeAnthropic,
) -> None:
    sdk = anthropic.Anthropic(
        base_url=claude.url, api_key=claude.api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    message = sdk.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi there"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "Echo: hi there"
    raw = httpx.post(
        claude.url + "/v1/messages",
        headers={"x-api-key": claude.api_key, "anthropic-version": "2023-06-01"},
        json={
            "model": MODEL,
            "max_tokens": 64,
            "stream": True,
            "tools": [{"name": "t", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "go"}],
        },
    )
    names = [line[7:] for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"
    for data in chunks_of(raw.text):
        event = json.loads(data)
        if event["type"] != "ping":
            EVENTS.validate_python(event)

    def rejected(status: int, body: dict[str, Any], **headers: str) -> str:
        sent = {"x-api-key": claude.api_key, "anthropic-version": "2023-06-01", **headers}
        response = httpx.post(claude.url + "/v1/messages", headers=sent, json=body)
        assert response.status_code == status, response.text
        error = response.json()
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
        return str(error["error"]["message"])

    hello = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert "x-api-key" in rejected(401, hello, **{"x-api-key": ""})
    assert "max_tokens" in rejected(400, {k: v for k, v in hello.items() if k != "max_tokens"})
    assert "Extra inputs" in rejected(400, {**hello, "tools_choice": "auto"})
    unanswered = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}],
        },
        {"role": "user", "content": "well?"},
    ]
    assert "tool_result" in rejected(400, {**hello, "messages": unanswered})
    schema_less = {**hello, "tools": [{"name": "x", "input_schema": {}}]}
    assert "input_schema" in rejected(400, schema_less)


# -- round trips -------------------------------------------------------------------------------


def test_text_with_system_prompt_and_cache_usage(
    gateway: Gateway, claude: FakeAnthropic, make_key: Any
) -> None:
    claude.cache_read, claude.cache_write = 100, 20
    key = make_key()
    completion = client(gateway, key).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        stop=["###"],
    )
    body = completion.model_dump(mode="json", exclude_unset=True)
    openapi.validate_response("POST", "/v1/chat/completions", 200, body)
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet-4-20250514"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    sent = claude.received[-1]
    assert sent.headers["x-api-key"] == claude.api_key and "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    ]
    assert sent.body["max_tokens"] == 4096 and sent.body["stop_sequences"] == ["###"]
    # Anthropic's input_tokens leaves the cache out; OpenAI's prompt_tokens counts it all.
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.prompt_tokens >= 120 + 10
    row = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"][0]
    assert (row["prompt_tokens"], row["cached_tokens"]) == (usage.prompt_tokens, 100)
    assert row["usage_source"] == "upstream"


def test_stream_text_and_usage(gateway: Gateway, claude: FakeAnthropic, api_key: str) -> None:
    stream = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "one two three four"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    validate_chunks(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert claude.received[-1].body["stream"] is True


def test_parallel_tools_and_a_tool_without_parameters(
    gateway: Gateway, claude: FakeAnthropic, api_key: str
) -> None:
    completion = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather, time and place"}],
        tools=WEATHER_TOOLS,
        tool_choice="required",
    )
    openapi.validate_response(
        "POST", "/v1/chat/completions", 200, completion.model_dump(mode="json", exclude_unset=True)
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == [
        "get_weather",
        "get_time",
        "get_location",
    ]
    assert [json.loads(c.function.arguments) for c in calls if c.type == "function"] == [
        {"city": "example city", "unit": "example unit"},
        {"city": "example city", "unit": "example unit"},
        {},
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    sent = claude.received[-1].body
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["tools"][2] == {
        "name": "get_location",
        "description": "Where am I?",
        "input_schema": {"type": "object", "properties": {}},
    }
    assert sent["tools"][0]["input_schema"]["required"] == ["city", "unit"]


def test_stream_tools_arguments_arrive_in_many_deltas(
    gateway: Gateway, claude: FakeAnthropic, api_key: str
) -> None:
    claude.fragment_size = 3
    stream = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather, time and place"}],
        tools=WEATHER_TOOLS,
        tool_choice="required",
        stream=True,
    )
    chunks = list(stream)
    validate_chunks(chunks)
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    names = {d.index: d.function.name for d in deltas if d.function and d.function.name}
    assert names == {0: "get_weather", 1: "get_time", 2: "get_location"}
    ids = [d.id for d in deltas if d.id]
    assert len(ids) == 3 and all(i.startswith("toolu_") for i in ids)
    arguments: dict[int, str] = {}
    pieces: dict[int, int] = {}
    for d in deltas:
        if d.function and d.function.arguments:
            arguments[d.index] = arguments.get(d.index, "") + d.function.arguments
            pieces[d.index] = pieces.get(d.index, 0) + 1
    assert json.loads(arguments[0]) == {"city": "example city", "unit": "example unit"}
    assert json.loads(arguments[1]) == json.loads(arguments[0])
    assert 2 not in arguments  # the tool without parameters has no argument deltas
    assert pieces[0] > 5 and pieces[1] > 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_result_turn(gateway: Gateway, claude: FakeAnthropic, api_key: str) -> None:
    messages: Any = [
        {"role": "user", "content": "weather and place"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo","unit":"C"}'},
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": "get_location", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "4 degrees"},
        {
            "role": "tool",
            "tool_call_id": "toolu_01B",
            "content": [{"type": "text", "text": "Oslo"}],
        },
    ]
    completion = client(gateway, api_key).chat.completions.create(
        model=MODEL, messages=messages, tools=WEATHER_TOOLS
    )
    assert completion.choices[0].message.content == "Tool results: 4 degrees; Oslo"
    sent = claude.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_01A",
        "name": "get_weather",
        "input": {"city": "Oslo", "unit": "C"},
    }
    assert sent[1]["content"][1]["input"] == {}
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ["toolu_01A", "toolu_01B"]


def test_images_by_base64_and_url(gateway: Gateway, claude: FakeAnthropic, api_key: str) -> None:
    completion = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "Echo: compare (saw 2 images)"
    blocks = claude.received[-1].body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


def test_json_schema_uses_structured_outputs(
    gateway: Gateway, claude: FakeAnthropic, api_key: str
) -> None:
    schema: Any = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    completion = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "which city?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"city": "example city"}
    sent = claude.received[-1].body
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def isolated(gateway: Gateway, claude: FakeAnthropic, make_key: Any, tag: str) -> openai.OpenAI:
    """A client whose key reaches a channel of its own: failures here harm no other test."""
    group = f"anthropic-{tag}"
    gateway.add_channel(
        name=group,
        type="anthropic",
        base_url=claude.base_url,
        api_key=claude.api_key,
        models=[MODEL],
        group=group,
    )
    return client(gateway, make_key(group=group))


HELLO: Any = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def test_529_overloaded_is_503_with_retry_after(
    gateway: Gateway, claude: FakeAnthropic, make_key: Any
) -> None:
    chat = isolated(gateway, claude, make_key, "overloaded").chat.completions
    claude.fail_next(529, **{"retry-after": "7"})
    with pytest.raises(openai.InternalServerError) as overloaded:
        chat.create(**HELLO)
    assert overloaded.value.status_code == 503
    assert overloaded.value.response.headers["retry-after"] == "7"
    assert "Overloaded" in overloaded.value.message
    openapi.validate_schema("ErrorResponse", overloaded.value.response.json())


def test_client_error_is_relayed_and_credentials_are_not(
    gateway: Gateway, claude: FakeAnthropic, make_key: Any
) -> None:
    chat = isolated(gateway, claude, make_key, "errors").chat.completions
    claude.fail_next(400, "messages.0.content: bad block")
    with pytest.raises(openai.BadRequestError) as bad:
        chat.create(**HELLO)
    assert bad.value.status_code == 400 and "bad block" in bad.value.message
    openapi.validate_schema("ErrorResponse", bad.value.response.json())
    claude.fail_next(401)
    with pytest.raises(openai.APIStatusError) as refused:
        chat.create(**HELLO)
    assert refused.value.status_code == 502 and "credentials" in refused.value.message


def test_error_event_mid_stream_reaches_the_client(
    gateway: Gateway, claude: FakeAnthropic, api_key: str
) -> None:
    claude.error_after = 4
    stream = client(gateway, api_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "a b c d e f"}], stream=True
    )
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert "Overloaded" in failed.value.message


def test_sdk_message_types_validate_the_fake(claude: FakeAnthropic) -> None:
    sdk = anthropic.Anthropic(
        base_url=claude.url, api_key=claude.api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    raw = sdk.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=64,
        tools=[{"name": "t", "input_schema": {"type": "object", "properties": {}}}],
        tool_choice={"type": "tool", "name": "t"},
        messages=[{"role": "user", "content": "go"}],
    )
    message = Message.model_validate(json.loads(raw.text()))
    assert message.stop_reason == "tool_use" and message.content[0].type == "tool_use"


def test_json_object_mode_is_asked_for_in_the_system_prompt(
    gateway: Gateway, claude: FakeAnthropic, api_key: str
) -> None:
    client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "a JSON object, please"}],
        response_format={"type": "json_object"},
    )
    sent = claude.received[-1].body
    assert sent["system"][-1]["text"] == "Respond with one JSON object and nothing else."
    assert "output_config" not in sent
