"""openai SDK -> gateway -> Gemini generateContent (the faithful fake), and the fake itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from google.genai import types

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_gemini import SIGNATURE, FakeGemini
from support.gateway import Gateway
from support.media import PNG_BASE64 as PNG
from support.sse import chunks_of

MODEL = "gemini-2.5-flash"
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Look up the {name[4:]} for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    for name in ("get_weather", "get_time")
] + [
    {
        "type": "function",
        "function": {
            "name": "get_location",
            "description": "Where am I?",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]


@pytest.fixture(scope="module")
def gemini(gateway: Gateway) -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        gateway.add_channel(
            name="gemini-main",
            type="gemini",
            base_url=server.base_url,
            api_key=server.api_key,
            models=[MODEL],
        )
        yield server


@pytest.fixture(autouse=True)
def _reset(gemini: FakeGemini) -> None:
    gemini.reset()


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def validate(completion: Any) -> None:
    body = completion.model_dump(mode="json", exclude_unset=True)
    openapi.validate_response("POST", "/v1/chat/completions", 200, body)


def validate_chunks(chunks: list[Any]) -> None:
    for chunk in chunks:
        body = chunk.model_dump(mode="json", exclude_unset=True)
        openapi.validate_schema("CreateChatCompletionStreamResponse", body)


def test_fake_speaks_the_sdk_types_and_rejects_what_gemini_rejects(gemini: FakeGemini) -> None:
    url = f"{gemini.base_url}/models/{MODEL}"
    key = {"x-goog-api-key": gemini.api_key}
    hello = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    answer = httpx.post(url + ":generateContent", headers=key, json=hello).json()
    parsed = types.GenerateContentResponse.model_validate(answer)
    assert parsed.text == "Echo: hi"
    streamed = httpx.post(url + ":streamGenerateContent?alt=sse", headers=key, json=hello)
    assert "\r\n\r\n" in streamed.text
    for data in chunks_of(streamed.text):
        types.GenerateContentResponse.model_validate(json.loads(data))

    def rejected(status: int, body: Any, headers: Any = key) -> str:
        response = httpx.post(url + ":generateContent", headers=headers, json=body)
        assert response.status_code == status, response.text
        return str(response.json()["error"]["message"])

    assert "API key not valid" in rejected(400, hello, {"x-goog-api-key": "AIza-wrong"})
    assert "Unknown name" in rejected(400, {**hello, "messages": []})
    assert "valid role" in rejected(
        400, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}
    )
    empty_object = {"name": "f", "parameters": {"type": "object", "properties": {}}}
    assert "non-empty" in rejected(
        400, {**hello, "tools": [{"functionDeclarations": [empty_object]}]}
    )
    unanswered = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}] * 2},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
        ]
    }
    assert "number of function response parts" in rejected(400, unanswered)


def test_text_with_system_instruction(gateway: Gateway, gemini: FakeGemini, make_key: Any) -> None:
    gemini.cached_tokens, gemini.thoughts_tokens = 6, 5
    key = make_key()
    completion = client(gateway, key).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        temperature=0.5,
        max_tokens=50,
        stop="###",
    )
    validate(completion)
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    sent = gemini.received[-1]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == gemini.api_key and "key" not in sent.query
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]
    assert sent.body["generationConfig"] == {
        "temperature": 0.5,
        "maxOutputTokens": 50,
        "stopSequences": ["###"],
    }
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.completion_tokens == 3 + 5  # thinking tokens are billed as output
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.prompt_tokens_details.cached_tokens == 6
    row = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"][0]
    assert (row["completion_tokens"], row["cached_tokens"]) == (8, 6)


def test_stream_text_and_usage(gateway: Gateway, gemini: FakeGemini, api_key: str) -> None:
    stream = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    validate_chunks(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three four five"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    sent = gemini.received[-1]
    assert sent.path.endswith(":streamGenerateContent") and sent.query == {"alt": "sse"}


def test_parallel_tools_and_a_tool_without_parameters(
    gateway: Gateway, gemini: FakeGemini, api_key: str
) -> None:
    completion = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather, time and place"}],
        tools=TOOLS,
        tool_choice="required",
    )
    validate(completion)
    calls = [c for c in completion.choices[0].message.tool_calls or [] if c.type == "function"]
    assert [c.function.name for c in calls] == ["get_weather", "get_time", "get_location"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "example city", "unit": "example unit"},
        {"city": "example city", "unit": "example unit"},
        {},
    ]
    assert len({c.id for c in calls}) == 3 and calls[0].id.endswith("__ts_" + SIGNATURE)
    assert completion.choices[0].finish_reason == "tool_calls"
    sent = gemini.received[-1].body
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    declarations = sent["tools"][0]["functionDeclarations"]
    assert declarations[2] == {"name": "get_location", "description": "Where am I?"}
    assert declarations[0]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "nullable": True}},
        "required": ["city", "unit"],
    }


def test_stream_tools(gateway: Gateway, gemini: FakeGemini, api_key: str) -> None:
    stream = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather, time and place"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        stream=True,
    )
    chunks = list(stream)
    validate_chunks(chunks)
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name if d.function else None) for d in deltas] == [(0, "get_time")]
    assert deltas[0].function and json.loads(deltas[0].function.arguments or "") == {
        "city": "example city",
        "unit": "example unit",
    }
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    config = gemini.received[-1].body["toolConfig"]["functionCallingConfig"]
    assert config == {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    everything = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "all of it"}],
        tools=TOOLS,
        tool_choice="required",
        stream=True,
    )
    names = [
        tc.function.name
        for c in everything
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.function
    ]
    assert names == ["get_weather", "get_time", "get_location"]


def test_tool_result_turn_carries_names_and_the_thought_signature(
    gateway: Gateway, gemini: FakeGemini, api_key: str
) -> None:
    first = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather and place"}],
        tools=TOOLS,
        tool_choice="required",
    )
    calls = [c for c in first.choices[0].message.tool_calls or [] if c.type == "function"]
    messages: Any = [
        {"role": "user", "content": "weather and place"},
        first.choices[0].message.model_dump(exclude_none=True),
        *(
            {"role": "tool", "tool_call_id": call.id, "content": f"result {n}"}
            for n, call in enumerate(calls)
        ),
    ]
    messages[-1]["content"] = '{"place": "Oslo"}'
    second = client(gateway, api_key).chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS
    )
    assert second.choices[0].message.content == 'Tool results: result 0; result 1; {"place":"Oslo"}'
    contents = gemini.received[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0]["thoughtSignature"] == SIGNATURE
    assert "thoughtSignature" not in contents[1]["parts"][1]
    assert [p["functionResponse"] for p in contents[2]["parts"]] == [
        {"name": "get_weather", "response": {"result": "result 0"}},
        {"name": "get_time", "response": {"result": "result 1"}},
        {"name": "get_location", "response": {"place": "Oslo"}},
    ]


def test_images_inline_and_by_url(gateway: Gateway, gemini: FakeGemini, api_key: str) -> None:
    completion = client(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "Echo: compare (saw 2 images)"
    parts = gemini.received[-1].body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert parts[2] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}
    }


def test_json_schema_mode(gateway: Gateway, gemini: FakeGemini, api_key: str) -> None:
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
    config = gemini.received[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "additionalProperties" not in config["responseSchema"]


def test_safety_blocks_are_content_filter(
    gateway: Gateway, gemini: FakeGemini, api_key: str
) -> None:
    chat = client(gateway, api_key).chat.completions
    hello: Any = {"model": MODEL, "messages": [{"role": "user", "content": "something bad"}]}
    gemini.block_prompt = True
    blocked = chat.create(**hello)
    validate(blocked)
    assert blocked.choices[0].finish_reason == "content_filter"
    streamed = list(chat.create(**hello, stream=True))
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "content_filter"
    gemini.block_prompt, gemini.safety_stop = False, True
    stopped = chat.create(**hello)
    assert stopped.choices[0].finish_reason == "content_filter"
    assert stopped.choices[0].message.content == "Echo:"


def test_upstream_errors_are_mapped(gateway: Gateway, gemini: FakeGemini, make_key: Any) -> None:
    group = "gemini-errors"
    gateway.add_channel(
        name=group,
        type="gemini",
        base_url=gemini.base_url,
        api_key=gemini.api_key,
        models=[MODEL],
        group=group,
    )
    chat = client(gateway, make_key(group=group)).chat.completions
    hello: Any = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    gemini.fail_next(400, "Invalid value at 'generation_config.temperature'")
    with pytest.raises(openai.BadRequestError) as bad:
        chat.create(**hello)
    assert "temperature" in bad.value.message
    assert bad.value.response.json()["error"]["code"] == "INVALID_ARGUMENT"
    gemini.fail_next(429, "Resource has been exhausted (e.g. check quota).")
    with pytest.raises(openai.InternalServerError) as exhausted:
        chat.create(**hello)
    assert exhausted.value.status_code == 503
    openapi.validate_schema("ErrorResponse", exhausted.value.response.json())
    gemini.fail_next(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
    with pytest.raises(openai.APIStatusError) as refused:
        chat.create(**hello)
    assert refused.value.status_code == 502 and "credentials" in refused.value.message
