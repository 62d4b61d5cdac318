"""Self-tests of the test-support fake OpenAI upstream and the spec validator.

Every body the fake sends is checked against the official SDK's types and the official spec.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_openai import FakeOpenAI
from support.seed import SEED_REQUEST, SEED_RESPONSE

CHAT = "/v1/chat/completions"
USER_HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI) -> Iterator[None]:
    yield
    fake.reset()


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake.base_url, api_key=fake.api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


def async_client(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=fake.base_url, api_key=fake.api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


# ----------------------------------------------------------------------------- helpers


class Raw:
    def __init__(self, status: int, headers: dict[str, str], text: str) -> None:
        self.status, self.headers, self.text = status, headers, text

    def json(self) -> Any:
        return json.loads(self.text)


def raw_request(
    fake: FakeOpenAI,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    data: bytes | None = None,
) -> Raw:
    """A plain HTTP request to the fake, bypassing the SDK."""
    headers = {"Content-Type": "application/json"}
    if key is None:
        key = fake.api_key
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if data is None and body is not None:
        data = json.dumps(body).encode()
    url = fake.base_url.removesuffix("/v1") + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Raw(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read().decode(),
            )
    except urllib.error.HTTPError as error:
        return Raw(
            error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()
        )


def check_completion(body: Any) -> ChatCompletion:
    """A non-stream body must satisfy both the SDK's type and the spec."""
    completion = ChatCompletion.model_validate(body)
    openapi.validate_response("POST", CHAT, 200, body)
    return completion


def check_error(raw: Raw, status: int) -> dict[str, Any]:
    assert raw.status == status, raw.text
    assert raw.headers["content-type"].startswith("application/json")
    body = raw.json()
    openapi.validate_response("POST", CHAT, status, body)
    error: dict[str, Any] = body["error"]
    return error


def stream_chunks(raw: Raw) -> list[dict[str, Any]]:
    """Check OpenAI's SSE framing and every chunk's shape; return the parsed chunks."""
    assert raw.status == 200, raw.text
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.endswith("data: [DONE]\n\n")
    events = raw.text.split("\n\n")
    assert events[-1] == ""
    chunks: list[dict[str, Any]] = []
    for event in events[:-2]:
        assert event.startswith("data: {"), event
        payload = event.removeprefix("data: ")
        chunk = json.loads(payload)
        assert payload == json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
        ChatCompletionChunk.model_validate(chunk)
        openapi.validate_response("POST", CHAT, 200, chunk, "text/event-stream")
        openapi.validate_schema("CreateChatCompletionStreamResponse", chunk)
        chunks.append(chunk)
    return chunks


def content_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == index
    )


# ----------------------------------------------------------------------------- seed


def test_seed_request_gets_the_documented_response(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(**SEED_REQUEST)
    body = json.loads(response.text)
    assert body == SEED_RESPONSE
    check_completion(body)
    openapi.validate_request("POST", CHAT, SEED_REQUEST)
    assert response.headers["x-request-id"].startswith("req_")

    [received] = fake.received
    assert (received.method, received.path, received.body) == ("POST", CHAT, SEED_REQUEST)
    assert received.headers["authorization"] == f"Bearer {fake.api_key}"


def test_seed_stream_raw_framing_and_usage(fake: FakeOpenAI) -> None:
    body = {**SEED_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    chunks = stream_chunks(raw_request(fake, "POST", CHAT, body))
    for chunk in chunks:
        assert chunk["id"] == SEED_RESPONSE["id"]
        assert chunk["created"] == SEED_RESPONSE["created"]
        assert chunk["model"] == "gpt-4o-2024-08-06"
        assert chunk["system_fingerprint"] == "fp_f3927aa00d"
        assert "usage" in chunk
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["usage"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == SEED_RESPONSE["usage"]
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    fragments = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert fragments[0] == ""
    assert len(fragments) >= 3
    assert "".join(fragments) == '{"location":"Paris, France"}'


async def test_seed_stream_reassembles_with_async_sdk(fake: FakeOpenAI) -> None:
    calls: dict[int, dict[str, str]] = {}
    finish_reasons: list[str] = []
    usage = None
    async with async_client(fake) as aclient:
        stream = await aclient.chat.completions.create(
            **SEED_REQUEST, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += delta.id or ""
                    if delta.function is not None:
                        call["name"] += delta.function.name or ""
                        call["arguments"] += delta.function.arguments or ""
    expected = SEED_RESPONSE["choices"][0]["message"]["tool_calls"][0]
    assert calls == {
        0: {
            "id": expected["id"],
            "name": expected["function"]["name"],
            "arguments": expected["function"]["arguments"],
        }
    }
    assert finish_reasons == ["tool_calls"]
    assert usage is not None
    assert usage.model_dump(exclude_unset=True) == SEED_RESPONSE["usage"]


# ----------------------------------------------------------------------------- non-stream


def test_echo_completion_shape_and_usage(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there  world"},
    ]
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages
    )
    body = json.loads(response.text)
    check_completion(body)
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", body["id"])
    assert abs(body["created"] - time.time()) < 60
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["system_fingerprint"].startswith("fp_")
    [choice] = body["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Echo: hello there  world",
        "refusal": None,
        "annotations": [],
    }
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    prompt = (len("Be brief.") + len("hello there  world")) // 4 + 10
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": 4,
        "total_tokens": prompt + 4,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_n_logprobs_and_max_tokens(client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": [{"type": "text", "text": "a b c d"}]}],
        n=2,
        logprobs=True,
        top_logprobs=2,
        max_completion_tokens=3,
    )
    body = json.loads(response.text)
    check_completion(body)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert choice["message"]["content"] == "Echo: a b"
        assert choice["finish_reason"] == "length"
        entries = choice["logprobs"]["content"]
        assert [e["token"] for e in entries] == ["Echo:", " a", " b"]
        assert all(e["bytes"] == list(e["token"].encode()) for e in entries)
        assert all(len(e["top_logprobs"]) == 2 for e in entries)
    assert body["usage"]["completion_tokens"] == 6


def test_tool_choice_forced_required_and_parallel(client: openai.OpenAI) -> None:
    tools: list[Any] = [
        *SEED_REQUEST["tools"],
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {
                    "type": "object",
                    "properties": {"tz": {"type": "string"}, "unused": {"type": "string"}},
                    "required": ["tz"],
                },
            },
        },
    ]

    def ask(**kwargs: Any) -> dict[str, Any]:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=USER_HI, tools=tools, **kwargs
        )
        body: dict[str, Any] = json.loads(raw.text)
        check_completion(body)
        return body

    forced = ask(tool_choice={"type": "function", "function": {"name": "get_time"}})
    [choice] = forced["choices"]
    assert choice["finish_reason"] == "stop"  # OpenAI's answer when a named function is forced
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_time", "arguments": '{"tz":"example tz"}'}
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call["id"])
    assert choice["message"]["content"] is None
    assert forced["usage"]["completion_tokens"] == 16

    required = ask(tool_choice="required")
    assert required["choices"][0]["finish_reason"] == "tool_calls"
    names = [c["function"]["name"] for c in required["choices"][0]["message"]["tool_calls"]]
    assert names == ["get_weather", "get_time"]

    single = ask(tool_choice="required", parallel_tool_calls=False)
    assert len(single["choices"][0]["message"]["tool_calls"]) == 1

    auto = ask()
    assert auto["choices"][0]["message"]["content"] == "Echo: hi there"


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temp": {"type": "number"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["city", "temp", "unit", "tags"],
        "additionalProperties": False,
    }
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=USER_HI,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        },
    )
    body = json.loads(raw.text)
    check_completion(body)
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), schema)


def test_sparse_response(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.sparse_response = True
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER_HI)
    body = json.loads(raw.text)
    ChatCompletion.model_validate(body)
    assert "system_fingerprint" not in body
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    [choice] = body["choices"]
    assert "logprobs" not in choice
    assert choice["message"] == {"role": "assistant", "content": "Echo: hi there"}
    # The spec requires message.refusal and choices[].logprobs: sparse vendors break it.
    with pytest.raises(AssertionError, match="refusal"):
        openapi.validate_response("POST", CHAT, 200, body)


# ----------------------------------------------------------------------------- streams


def test_stream_without_include_usage_has_no_usage(fake: FakeOpenAI) -> None:
    body = {"model": "gpt-4o", "messages": USER_HI, "stream": True}
    chunks = stream_chunks(raw_request(fake, "POST", CHAT, body))
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert content_of(chunks) == "Echo: hi there"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == [
        "Echo:",
        " hi",
        " there",
    ]


def test_stream_include_usage_matches_non_stream(fake: FakeOpenAI) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": USER_HI,
        "logprobs": True,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = stream_chunks(raw_request(fake, "POST", CHAT, body))
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert content_of(chunks, 0) == content_of(chunks, 1) == "Echo: hi there"
    with_logprobs = [c for c in chunks if c["choices"] and c["choices"][0]["logprobs"]]
    assert len(with_logprobs) == 6

    plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    usage = raw_request(fake, "POST", CHAT, plain).json()["usage"]
    assert chunks[-1]["usage"] == usage


def test_omit_stream_usage(fake: FakeOpenAI) -> None:
    fake.omit_stream_usage = True
    body = {**SEED_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    chunks = stream_chunks(raw_request(fake, "POST", CHAT, body))
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_stream_tool_calls_for_several_tools(fake: FakeOpenAI) -> None:
    second = copy.deepcopy(SEED_REQUEST["tools"][0])
    second["function"]["name"] = "get_forecast"
    body = {
        "model": "gpt-4o-mini",
        "messages": USER_HI,
        "tools": [*SEED_REQUEST["tools"], second],
        "tool_choice": "required",
        "stream": True,
    }
    chunks = stream_chunks(raw_request(fake, "POST", CHAT, body))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []):
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id", "")
            call["name"] += delta.get("function", {}).get("name", "")
            call["arguments"] += delta.get("function", {}).get("arguments", "")
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_forecast"]
    assert all(
        json.loads(c["arguments"]) == {"location": "example location"} for c in calls.values()
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_drop_next_stream_after(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.drop_next_stream_after(2)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert seen == ["", "Echo:"]
    # Only the next stream is cut.
    stream = client.chat.completions.create(model="gpt-4o", messages=USER_HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Echo: hi there"


async def test_stream_delay_does_not_block_concurrent_streams(fake: FakeOpenAI) -> None:
    fake.stream_delay = 0.1  # 5 events -> 4 gaps -> ~0.4 s per stream, 1.6 s if serialized

    async def one(aclient: openai.AsyncOpenAI) -> str:
        stream = await aclient.chat.completions.create(
            model="gpt-4o", messages=USER_HI, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    started = time.monotonic()
    async with async_client(fake) as aclient:
        results = await asyncio.gather(*(one(aclient) for _ in range(4)))
    elapsed = time.monotonic() - started
    assert results == ["Echo: hi there"] * 4
    assert 0.38 <= elapsed < 1.2


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_fail_next_maps_to_sdk_errors(
    fake: FakeOpenAI, client: openai.OpenAI, status: int, exc_type: type[openai.APIStatusError]
) -> None:
    fake.fail_next(status)
    with pytest.raises(exc_type) as caught:
        client.chat.completions.create(**SEED_REQUEST)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    openapi.validate_schema("Error", body)  # the SDK hands over the inner "error" object
    assert client.chat.completions.create(**SEED_REQUEST).id == SEED_RESPONSE["id"]


def test_fail_next_details_times_and_headers(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.fail_next(429)
    error = check_error(raw_request(fake, "POST", CHAT, SEED_REQUEST), 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")

    fake.fail_next(
        429,
        "You exceeded your current quota.",
        err_type="insufficient_quota",
        code="insufficient_quota",
        headers={"retry-after": "7"},
        times=2,
    )
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            client.models.list()
        assert caught.value.code == "insufficient_quota"
        assert caught.value.type == "insufficient_quota"
        assert caught.value.message.endswith("You exceeded your current quota.")
        assert caught.value.response.headers["retry-after"] == "7"
    assert len(client.models.list().data) == 2
    assert len(fake.received) == 4


def test_wrong_or_missing_key_is_401(fake: FakeOpenAI) -> None:
    with (
        openai.OpenAI(
            base_url=fake.base_url,
            api_key="sk-wrong-key-123456",
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        ) as c,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        c.chat.completions.create(**SEED_REQUEST)
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param is None
    assert caught.value.message.startswith("Error code: 401")
    assert "Incorrect API key provided: sk-" in caught.value.message
    assert "sk-wrong-key-123456" not in caught.value.message

    error = check_error(raw_request(fake, "POST", CHAT, SEED_REQUEST, key=""), 401)
    assert "didn't provide an API key" in error["message"]
    check_error(raw_request(fake, "GET", "/v1/models", key="sk-nope-nope-nope"), 401)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "gpt-4o"}, "messages", "missing_required_parameter"),
        ({"model": "gpt-4o", "messages": []}, "messages", "empty_array"),
        (
            {"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_type",
        ),
        ({"model": "gpt-4o", "messages": USER_HI, "n": 0}, "n", "integer_below_min_value"),
        ({"model": "gpt-4o", "messages": USER_HI, "bogus": 1}, None, None),
        (
            {"model": "gpt-4o", "messages": USER_HI, "stream_options": {"include_usage": True}},
            "stream_options",
            None,
        ),
        (
            {"model": "gpt-4o", "messages": USER_HI, "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {"type": "object", "required": True}}}},
            "response_format",
            None,
        ),
        (
            {"model": "gpt-4o", "messages": USER_HI, "tools": [{"type": "function", "function": {
                "name": "f", "parameters": {"type": "object", "properties": {"a": 5}}}}]},
            "tools[0].function.parameters",
            "invalid_function_parameters",
        ),
    ],
)  # fmt: skip
def test_invalid_bodies_are_400(
    fake: FakeOpenAI, body: dict[str, Any], param: str | None, code: str | None
) -> None:
    error = check_error(raw_request(fake, "POST", CHAT, body), 400)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]


def test_unparseable_body_is_400(fake: FakeOpenAI) -> None:
    error = check_error(raw_request(fake, "POST", CHAT, data=b"{nope"), 400)
    assert error["message"].startswith("We could not parse the JSON body")
    assert fake.received[-1].body is None


def test_invalid_body_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=USER_HI, extra_body={"x_internal": 1}
        )
    assert "Unrecognized request argument supplied: x_internal" in caught.value.message


def test_unknown_model_and_path(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=USER_HI)
    assert caught.value.code == "model_not_found"
    assert "The model `gpt-9` does not exist or you do not have access to it." in str(caught.value)

    fake.models = [*fake.models, "gpt-9"]
    assert client.chat.completions.create(model="gpt-9", messages=USER_HI).model == "gpt-9"

    error = check_error(raw_request(fake, "POST", "/v1/nowhere", {}), 404)
    assert error["message"] == "Invalid URL (POST /v1/nowhere)"


# ----------------------------------------------------------------------------- models


def test_models_list_and_retrieve(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    listed = raw_request(fake, "GET", "/v1/models")
    openapi.validate_response("GET", "/v1/models", 200, listed.json())
    assert [m.id for m in client.models.list()] == ["gpt-4o", "gpt-4o-mini"]

    one = raw_request(fake, "GET", "/v1/models/gpt-4o-mini")
    openapi.validate_response("GET", "/v1/models/gpt-4o-mini", 200, one.json())
    assert client.models.retrieve("gpt-4o").owned_by == "system"

    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-nope")
    assert caught.value.code == "model_not_found"


def test_reset_restores_defaults(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.models = ["x"]
    fake.sparse_response = fake.omit_stream_usage = True
    fake.stream_delay = 1.0
    fake.fail_next(500, times=3)
    fake.drop_next_stream_after(1)
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    fake.reset()
    assert fake.received == []
    assert (fake.stream_delay, fake.sparse_response, fake.omit_stream_usage) == (0.0, False, False)
    assert fake.models == ["gpt-4o", "gpt-4o-mini"]
    stream = client.chat.completions.create(model="gpt-4o", messages=USER_HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Echo: hi there"


# ----------------------------------------------------------------------------- validator


def test_validator_accepts_seed_and_rejects_broken() -> None:
    openapi.validate_response("POST", CHAT, 200, SEED_RESPONSE)
    openapi.validate_request("POST", CHAT, SEED_REQUEST)
    openapi.validate_schema("CreateChatCompletionResponse", SEED_RESPONSE)

    broken = copy.deepcopy(SEED_RESPONSE)
    del broken["choices"]
    broken["usage"]["prompt_tokens"] = "65"
    with pytest.raises(AssertionError) as caught:
        openapi.validate_response("POST", CHAT, 200, broken)
    assert "'choices' is a required property" in str(caught.value)
    assert "$.usage.prompt_tokens" in str(caught.value)

    bad_finish = copy.deepcopy(SEED_RESPONSE)
    bad_finish["choices"][0]["finish_reason"] = "done"
    with pytest.raises(AssertionError, match="finish_reason"):
        openapi.validate_schema("CreateChatCompletionResponse", bad_finish)

    with pytest.raises(AssertionError, match="'messages' is a required property"):
        openapi.validate_request("POST", CHAT, {"model": "gpt-4o"})


def test_validator_paths_and_nullable() -> None:
    model = {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "system"}
    openapi.validate_response("GET", "/v1/models/gpt-4o", 200, model)
    with pytest.raises(AssertionError):
        openapi.validate_response("GET", "/v1/models/gpt-4o", 200, {"id": "gpt-4o"})
    with pytest.raises(AssertionError, match="not an operation"):
        openapi.validate_response("DELETE", "/v1/nowhere", 200, {})
    with pytest.raises(AssertionError, match="content type"):
        openapi.validate_response("GET", "/v1/models", 200, {}, "text/event-stream")
    # A documented error status (429) and an undocumented one both use ErrorResponse.
    error = {"error": {"message": "m", "type": "requests", "param": None, "code": None}}
    openapi.validate_response("POST", CHAT, 429, error)
    openapi.validate_response("POST", CHAT, 401, error)
    with pytest.raises(AssertionError):
        openapi.validate_response("POST", CHAT, 401, {"error": "nope"})
    # `nullable: true` in the spec is honoured (usage: null on stream chunks).
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}
        ],
        "usage": None,
    }
    openapi.validate_response("POST", CHAT, 200, chunk, "text/event-stream")
    with pytest.raises(KeyError):
        openapi.validate_schema("NoSuchSchema", {})
    assert openapi.spec() is openapi.spec()
