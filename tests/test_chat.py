"""Chat completions through the real gateway, with the official openai SDK as the client."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support import openapi, processes
from support.constants import CLIENT_TIMEOUT_S
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway
from support.seed import SEED_REQUEST, SEED_RESPONSE
from support.sse import chunks_of


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def test_seed_request_returns_the_documented_response(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    completion = client(gateway, api_key).chat.completions.create(**SEED_REQUEST)
    body = completion.model_dump(mode="json", exclude_unset=True)
    assert body == SEED_RESPONSE
    openapi.validate_response("POST", "/v1/chat/completions", 200, body)
    sent = fake.received[-1]
    assert sent.headers["authorization"] == "Bearer " + fake.api_key
    assert sent.body == SEED_REQUEST


def test_seed_request_streamed_reassembles_the_tool_call(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    stream = client(gateway, api_key).chat.completions.create(**SEED_REQUEST, stream=True)
    chunks = list(stream)
    for chunk in chunks:
        openapi.validate_schema(
            "CreateChatCompletionStreamResponse", chunk.model_dump(mode="json", exclude_unset=True)
        )
    assert all(chunk.usage is None for chunk in chunks), "usage chunk leaked to the client"
    assert {chunk.model for chunk in chunks} == {"gpt-4o-2024-08-06"}
    calls = [tc for chunk in chunks for c in chunk.choices for tc in c.delta.tool_calls or ()]
    assert calls[0].id == "call_FezxjoWuDV1CL3dITVFOjUzK"
    assert calls[0].function and calls[0].function.name == "get_weather"
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(arguments) == {"location": "Paris, France"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The gateway asked the upstream for usage so it can meter the stream.
    assert fake.received[-1].body["stream_options"] == {"include_usage": True}


def test_stream_usage_chunk_is_kept_when_the_client_asks(gateway: Gateway, api_key: str) -> None:
    stream = client(gateway, api_key).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_async_client_stream_and_non_stream(gateway: Gateway, api_key: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=api_key, timeout=CLIENT_TIMEOUT_S
    ) as aclient:
        completion = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
        )
        assert completion.choices[0].message.content == "Echo: hello there"
        assert completion.model == "gpt-4o-mini-2024-07-18"
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Echo: hello there"


def test_fields_the_gateway_does_not_use_pass_through(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    request: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            }
        ],
        "temperature": 0.25,
        "seed": 7,
        "user": "alice",
        "metadata": {"team": "search"},
        "n": 2,
        "logprobs": True,
        "top_logprobs": 2,
    }
    completion = client(gateway, api_key).chat.completions.create(**request)
    assert fake.received[-1].body == request
    assert len(completion.choices) == 2
    assert completion.choices[0].logprobs is not None
    openapi.validate_response(
        "POST", "/v1/chat/completions", 200, completion.model_dump(mode="json", exclude_unset=True)
    )


def test_parallel_tool_calls_and_json_schema(gateway: Gateway, api_key: str) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
        for name in ("get_weather", "get_time")
    ]
    completion = client(gateway, api_key).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "weather and time in Oslo"}],
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=True,
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == ["get_weather", "get_time"]
    schema: Any = {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
    structured = client(gateway, api_key).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "which city?"}],
        response_format={"type": "json_schema", "json_schema": schema},
    )
    assert "city" in json.loads(structured.choices[0].message.content or "{}")


def test_sparse_upstream_response_is_completed_to_the_spec(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    fake.sparse_response = True
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    body = response.json()
    assert body["system_fingerprint"] == "fp_omnirelay"
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"]["refusal"] is None
    openapi.validate_response("POST", "/v1/chat/completions", 200, body)


def test_first_chunk_arrives_while_the_upstream_is_still_streaming(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    fake.stream_delay = 0.3
    start = time.monotonic()
    stream = client(gateway, api_key).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
    )
    first = next(iter(stream))
    first_at = time.monotonic() - start
    rest = list(stream)
    total = time.monotonic() - start
    assert first.choices[0].delta.role == "assistant"
    # Eight more events follow at 0.3 s each: the first must not wait for them.
    assert len(rest) >= 7
    assert first_at < total - 1.5, (first_at, total)


def test_stream_without_upstream_usage_is_counted_locally(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    fake.omit_stream_usage = True
    key = make_key()
    stream = client(gateway, key).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "please repeat these words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Echo: please repeat these words"
    row = _last_log(gateway, key)
    assert row["usage_source"] == "counted"
    # o200k: "Echo: please repeat these words" is 6 tokens.
    assert row["completion_tokens"] == 6
    assert row["prompt_tokens"] > 0 and row["cost_nano"] > 0


def _last_log(gateway: Gateway, key: Any) -> dict[str, Any]:
    response = gateway.admin("GET", f"/admin/logs?key_id={key.id}")
    assert response.status_code == 200, response.text
    rows = response.json()["data"]
    assert rows, "no log row was written"
    return dict(rows[0])


def test_seed_request_with_curl(gateway: Gateway, api_key: str) -> None:
    result = processes.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            gateway.base_url + "/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {api_key}",
            "--data-raw",
            json.dumps(SEED_REQUEST),
        ],
        check=True,
    )
    assert json.loads(result.stdout) == SEED_RESPONSE
    streamed = processes.run(
        [
            "curl",
            "-sS",
            "-N",
            "--fail-with-body",
            gateway.base_url + "/chat/completions",
            "-H",
            f"Authorization: Bearer {api_key}",
            "--data-raw",
            json.dumps({**SEED_REQUEST, "stream": True}),
        ],
        check=True,
    )
    events = chunks_of(streamed.stdout)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["id"] == SEED_RESPONSE["id"] for c in chunks)


@pytest.fixture(autouse=True)
def _copy_guard() -> Iterator[None]:
    # The seed constants are shared; a test must never mutate them.
    before = copy.deepcopy(SEED_REQUEST)
    yield
    assert before == SEED_REQUEST
