"""google-genai SDK -> gateway's Gemini API -> OpenAI, Anthropic and Gemini channels, and back.

Each channel is a faithful fake checked by its own official types; the client is the
official SDK, unchanged but for ``http_options={"base_url": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from google import genai
from google.genai import errors, types

from omnirelay.api.errors import answer_errors_as_google, error_middleware
from support.constants import CLIENT_TIMEOUT_S
from support.fake_gemini import SIGNATURE
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway
from support.inbound import CLAUDE, GEMINI, GPT, Upstreams, upstreams
from support.media import PNG_BASE64 as PNG
from support.sse import chunks_of

GROUP = "gemini-inbound"
CITY = types.Schema(
    type=types.Type.OBJECT,
    properties={"city": types.Schema(type=types.Type.STRING)},
    required=["city"],
)
TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="get_weather", description="Weather.", parameters=CITY),
            types.FunctionDeclaration(name="get_time", description="Time.", parameters=CITY),
            types.FunctionDeclaration(name="get_location", description="Where am I?"),
        ]
    )
]
FORCED = types.ToolConfig(
    function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
)


@pytest.fixture(scope="module")
def every_channel(gateway: Gateway) -> Iterator[Upstreams]:
    with upstreams(gateway, GROUP) as found:
        yield found


@pytest.fixture
def ups(every_channel: Upstreams) -> Upstreams:
    every_channel.reset()
    return every_channel


@pytest.fixture
def key(make_key: Any) -> str:
    return str(make_key(group=GROUP))


def sdk_contents(items: list[Any]) -> Any:
    """Contents as the SDK takes them (its hints vary with what else is installed)."""
    return items


def google(gateway: Gateway, key: str, version: str | None = None) -> genai.Client:
    options = types.HttpOptions(
        base_url=gateway.url, api_version=version, timeout=int(CLIENT_TIMEOUT_S * 1000)
    )
    return genai.Client(api_key=key, http_options=options)


def config(**fields: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(**fields)


def calls_of(response: types.GenerateContentResponse) -> list[tuple[str | None, Any]]:
    return [(call.name, call.args) for call in response.function_calls or ()]


# -- to an OpenAI channel ------------------------------------------------------------------


def test_text_to_an_openai_channel(gateway: Gateway, ups: Upstreams, key: str) -> None:
    client = google(gateway, key)
    response = client.models.generate_content(
        model=GPT,
        contents="hello there",
        config=config(
            system_instruction="Be brief.",
            max_output_tokens=100,
            stop_sequences=["###"],
            temperature=0.5,
            top_p=0.9,
        ),
    )
    assert response.text == "Echo: hello there"
    candidate = (response.candidates or [])[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    assert response.model_version == "gpt-4o-2024-08-06"
    usage = response.usage_metadata
    assert usage is not None and usage.candidates_token_count == 3
    assert (usage.prompt_token_count or 0) > 0
    assert usage.total_token_count == (usage.prompt_token_count or 0) + 3
    sent = ups.openai.received[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
    ]
    assert (sent["max_tokens"], sent["stop"], sent["temperature"], sent["top_p"]) == (
        100,
        ["###"],
        0.5,
        0.9,
    )


def test_stream_to_an_openai_channel(gateway: Gateway, ups: Upstreams, key: str) -> None:
    client = google(gateway, key)
    chunks = list(client.models.generate_content_stream(model=GPT, contents="one two three four"))
    assert "".join(chunk.text or "" for chunk in chunks) == "Echo: one two three four"
    assert len(chunks) >= 3  # the text arrives in pieces, as it is generated
    last = chunks[-1]
    assert (last.candidates or [])[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 5
    assert ups.openai.received[-1].body["stream_options"] == {"include_usage": True}


def test_function_calling_to_an_openai_channel(gateway: Gateway, ups: Upstreams, key: str) -> None:
    client = google(gateway, key)
    response = client.models.generate_content(
        model=GPT,
        contents="weather, time and place",
        config=config(tools=TOOLS, tool_config=FORCED),
    )
    assert calls_of(response) == [
        ("get_weather", {"city": "example city"}),
        ("get_time", {"city": "example city"}),
        ("get_location", {}),
    ]
    sent = ups.openai.received[-1].body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert sent["tools"][2]["function"]["parameters"] == {"type": "object", "properties": {}}
    # The calls go back with their results, as the SDK writes them; ids pair them up.
    called = (response.candidates or [])[0].content
    assert called is not None
    results = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name="get_weather", response={"temp": 4}),
            types.Part.from_function_response(name="get_time", response={"time": "noon"}),
            types.Part.from_function_response(name="get_location", response={"city": "Oslo"}),
        ],
    )
    history = [types.Content(role="user", parts=[types.Part(text="weather?")]), called, results]
    answer = client.models.generate_content(model=GPT, contents=history, config=config(tools=TOOLS))
    assert answer.text == "Echo: weather?"
    messages = ups.openai.received[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "tool"]
    ids = [call["id"] for call in messages[1]["tool_calls"]]
    assert [m["tool_call_id"] for m in messages[2:]] == ids
    assert json.loads(messages[2]["content"]) == {"temp": 4}


def test_streamed_function_calls_to_an_openai_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    tools = config(tools=TOOLS, tool_config=FORCED)
    chunks = list(client.models.generate_content_stream(model=GPT, contents="wt", config=tools))
    calls = [(c.name, c.args) for chunk in chunks for c in chunk.function_calls or ()]
    assert calls == [
        ("get_weather", {"city": "example city"}),
        ("get_time", {"city": "example city"}),
        ("get_location", {}),
    ]
    assert chunks[-1].usage_metadata is not None
    assert (chunks[-1].usage_metadata.candidates_token_count or 0) > 0


def test_images_json_schema_and_thinking_to_an_openai_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    client.models.generate_content(
        model=GPT,
        contents=sdk_contents(
            [
                types.Part(text="what is this?"),
                types.Part.from_bytes(data=b"\x89PNG\r\n", mime_type="image/png"),
                types.Part.from_uri(file_uri="https://example.com/a.jpg", mime_type="image/jpeg"),
            ]
        ),
        config=config(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT,
                properties={"answer": types.Schema(type=types.Type.STRING, nullable=True)},
            ),
            thinking_config=types.ThinkingConfig(thinking_budget=512),
        ),
    )
    sent = ups.openai.received[-1].body
    parts = sent["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": ["string", "null"]}},
            },
        },
    }
    assert sent["reasoning_effort"] == "low"


# -- to an Anthropic channel ---------------------------------------------------------------


def test_text_and_stream_to_an_anthropic_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    response = client.models.generate_content(
        model=CLAUDE,
        contents="hello there",
        config=config(system_instruction="Be brief.", max_output_tokens=2000),
    )
    assert response.text == "Echo: hello there"
    sent = ups.claude.received[-1].body
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["max_tokens"] == 2000
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 3
    chunks = list(
        client.models.generate_content_stream(
            model=CLAUDE,
            contents="one two three",
            config=config(thinking_config=types.ThinkingConfig(thinking_budget=1024)),
        )
    )
    assert "".join(chunk.text or "" for chunk in chunks) == "Echo: one two three"
    assert (chunks[-1].candidates or [])[0].finish_reason == types.FinishReason.STOP
    sent = ups.claude.received[-1].body
    assert sent["stream"] is True
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_function_calling_to_an_anthropic_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    tools = config(tools=TOOLS, tool_config=FORCED)
    response = client.models.generate_content(
        model=CLAUDE, contents="weather, time and place", config=tools
    )
    assert calls_of(response) == [
        ("get_weather", {"city": "example city"}),
        ("get_time", {"city": "example city"}),
        ("get_location", {}),
    ]
    chunks = list(
        client.models.generate_content_stream(
            model=CLAUDE, contents="weather, time and place", config=tools
        )
    )
    streamed = [(c.name, c.args) for chunk in chunks for c in chunk.function_calls or ()]
    assert streamed == calls_of(response)
    # Anthropic insists every tool_use is answered in the next turn: the pairing holds.
    called = (response.candidates or [])[0].content
    assert called is not None
    results = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name="get_weather", response={"temp": 4}),
            types.Part.from_function_response(name="get_time", response={"time": "noon"}),
            types.Part.from_function_response(name="get_location", response={"city": "Oslo"}),
            types.Part(text="so, a coat?"),
        ],
    )
    history = [types.Content(role="user", parts=[types.Part(text="weather?")]), called, results]
    answer = client.models.generate_content(
        model=CLAUDE, contents=history, config=config(tools=TOOLS)
    )
    assert answer.text == 'Tool results: {"temp":4}; {"time":"noon"}; {"city":"Oslo"}'
    turns = ups.claude.received[-1].body["messages"]
    uses = [block["id"] for block in turns[1]["content"] if block["type"] == "tool_use"]
    answered = [b["tool_use_id"] for b in turns[2]["content"] if b["type"] == "tool_result"]
    assert answered == uses and len(uses) == 3


# -- to a Gemini channel: relayed as it came -----------------------------------------------


def test_a_gemini_channel_gets_the_request_as_it_came(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    safety = [
        types.SafetySetting(
            category=types.HarmCategory.HARM_CATEGORY_HARASSMENT,
            threshold=types.HarmBlockThreshold.BLOCK_ONLY_HIGH,
        )
    ]
    client = google(gateway, key, "v1beta")
    response = client.models.generate_content(
        model=GEMINI,
        contents="hello there",
        config=config(
            system_instruction="Be brief.",
            safety_settings=safety,
            thinking_config=types.ThinkingConfig(thinking_budget=0),
        ),
    )
    assert response.text == "Echo: hello there"
    assert response.model_version == GEMINI and response.response_id
    received = ups.gemini.received[-1]
    assert received.path == f"/v1beta/models/{GEMINI}:generateContent"
    assert received.headers["x-goog-api-key"] == ups.gemini.api_key
    # Exactly what the client sent: safetySettings and snake_case fields included.
    assert received.body["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
    ]
    assert received.body["generationConfig"] == {"thinkingConfig": {"thinking_budget": 0}}


def test_native_function_calls_keep_their_thought_signature(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    tools = config(tools=TOOLS, tool_config=FORCED)
    response = client.models.generate_content(model=GEMINI, contents="all three", config=tools)
    parts = (response.candidates or [])[0].content.parts or []  # type: ignore[union-attr]
    assert [p.function_call.name for p in parts if p.function_call] == [
        "get_weather",
        "get_time",
        "get_location",
    ]
    assert parts[0].thought_signature == base64.b64decode(SIGNATURE)
    chunks = list(client.models.generate_content_stream(model=GEMINI, contents="x", config=tools))
    streamed = [(c.name, c.args) for chunk in chunks for c in chunk.function_calls or ()]
    assert streamed == calls_of(response)
    # The whole turn goes back; the fake checks each call is answered.
    results = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name=name, response={"result": "ok"})
            for name in ("get_weather", "get_time", "get_location")
        ],
    )
    called = (response.candidates or [])[0].content
    assert called is not None
    answer = client.models.generate_content(
        model=GEMINI,
        contents=sdk_contents(
            [types.Content(role="user", parts=[types.Part(text="q")]), called, results]
        ),
        config=config(tools=TOOLS),
    )
    assert answer.text == "Tool results: ok; ok; ok"
    assert ups.gemini.received[-1].body["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


def test_native_stream_is_gemini_events_as_they_came(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": "one two three four five"}]}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(data) for data in chunks_of(response.text)]
    assert len(events) == 3
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == (
        "Echo: one two three four five"
    )
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 6
    assert all(e["modelVersion"] == GEMINI for e in events)


# -- countTokens, embeddings, models -------------------------------------------------------


def test_count_tokens_is_counted_here_and_free(
    gateway: Gateway, ups: Upstreams, make_key: Any
) -> None:
    key = make_key(group=GROUP)
    client = google(gateway, key)
    short = client.models.count_tokens(model=GPT, contents="hello there")
    longer = client.models.count_tokens(model=GEMINI, contents="hello there " * 50)
    assert 0 < (short.total_tokens or 0) < (longer.total_tokens or 0)
    assert ups.openai.received == [] and ups.gemini.received == []
    assert gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"] == []


@pytest.mark.parametrize("model", ["text-embedding-3-small", "gemini-embedding-001"])
def test_embeddings_on_any_channel(gateway: Gateway, ups: Upstreams, key: str, model: str) -> None:
    client = google(gateway, key)
    one = client.models.embed_content(model=model, contents="hello there")
    assert one.embeddings and len(one.embeddings[0].values or []) == 8
    many = client.models.embed_content(
        model=model,
        contents=sdk_contents(["one", "two two", "three"]),
        config=types.EmbedContentConfig(output_dimensionality=4),
    )
    assert [len(e.values or []) for e in many.embeddings or []] == [4, 4, 4]
    if model.startswith("gemini"):
        sent = ups.gemini.received[-1].body["requests"]
        assert [r["content"]["parts"][0]["text"] for r in sent] == ["one", "two two", "three"]
        assert {r["outputDimensionality"] for r in sent} == {4}
    else:
        sent = ups.openai.received[-1].body
        assert (sent["input"], sent["dimensions"]) == (["one", "two two", "three"], 4)
    one_alone = httpx.post(
        f"{gateway.url}/v1beta/models/{model}:embedContent?key={key}",
        json={"content": {"parts": [{"text": "two two"}]}},
        timeout=30,
    )
    assert one_alone.status_code == 200, one_alone.text
    assert len(one_alone.json()["embedding"]["values"]) == 8


def test_models_are_the_keys_own(gateway: Gateway, ups: Upstreams, make_key: Any) -> None:
    key = make_key(group=GROUP, models=[GPT, GEMINI, "gemini-embedding-001"])
    for version in ("v1", "v1beta"):
        client = google(gateway, key, version)
        listed = {model.name: model for model in client.models.list()}
        assert set(listed) == {f"models/{GPT}", f"models/{GEMINI}", "models/gemini-embedding-001"}
        assert "generateContent" in (listed[f"models/{GPT}"].supported_actions or [])
        assert "embedContent" in (listed["models/gemini-embedding-001"].supported_actions or [])
        assert client.models.get(model=GEMINI).name == f"models/{GEMINI}"
        with pytest.raises(errors.ClientError) as missing:
            client.models.get(model=CLAUDE)
        assert (missing.value.code, missing.value.status) == (404, "NOT_FOUND")
    # OpenAI's clients still get OpenAI's list on the same path.
    openai_list = httpx.get(
        gateway.base_url + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    assert openai_list["object"] == "list"
    assert {m["id"] for m in openai_list["data"]} == {GPT, GEMINI, "gemini-embedding-001"}


# -- errors --------------------------------------------------------------------------------


def test_errors_take_googles_shape(gateway: Gateway, ups: Upstreams, key: str) -> None:
    def post(path: str, body: Any, **headers: str) -> httpx.Response:
        sent = {"x-goog-api-key": key, **headers}
        return httpx.post(gateway.url + path, headers=sent, json=body, timeout=30)

    def error(response: httpx.Response, code: int, status: str) -> str:
        assert response.status_code == code, response.text
        body = response.json()["error"]
        assert (body["code"], body["status"]) == (code, status)
        assert response.headers["x-request-id"]
        return str(body["message"])

    hello = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    generate = f"/v1beta/models/{GPT}:generateContent"
    error(post(generate, hello, **{"x-goog-api-key": "AIza-wrong"}), 401, "UNAUTHENTICATED")
    assert "contents" in error(post(generate, {"contents": []}), 400, "INVALID_ARGUMENT")
    error(post("/v1beta/models/nope-model:generateContent", hello), 404, "NOT_FOUND")
    assert "Embed" in error(post(f"/v1beta/models/{GPT}:predict", hello), 404, "NOT_FOUND")
    stream = f"/v1beta/models/{GPT}:streamGenerateContent"
    assert "alt=sse" in error(post(stream, hello), 400, "INVALID_ARGUMENT")
    search = {**hello, "tools": [{"googleSearch": {}}]}
    said = error(post(generate, search), 400, "INVALID_ARGUMENT")
    assert "tools[0].googleSearch" in said and "Gemini" in said
    ups.openai.fail_next(429)
    error(post(generate, hello), 503, "UNAVAILABLE")
    ups.gemini.fail_next(400, "Invalid value at 'generation_config.temperature'.")
    said = error(post(f"/v1beta/models/{GEMINI}:generateContent", hello), 400, "INVALID_ARGUMENT")
    assert "temperature" in said
    # The SDK reads them as the errors it knows.
    client = google(gateway, "AIza-wrong")
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model=GPT, contents="hi")
    assert (raised.value.code, raised.value.status) == (401, "UNAUTHENTICATED")


def google_error(response: httpx.Response, code: int, status: str) -> str:
    """The SDK's own reading of an error answer: Google's shape, code and status."""
    assert response.status_code == code, response.text
    assert set(response.json()) == {"error"}, response.text
    assert set(response.json()["error"]) == {"code", "message", "status"}, response.text
    assert response.headers["x-request-id"]
    with pytest.raises(errors.APIError) as raised:
        errors.APIError.raise_for_response(response)
    assert (raised.value.code, raised.value.status) == (code, status), response.text
    assert raised.value.message
    return str(raised.value.message)


def test_the_servers_own_errors_take_googles_shape(gateway: Gateway, key: str) -> None:
    """What no Gemini handler answers (aiohttp's 404 and 405, a body that is not JSON)
    still comes back in Google's shape under /v1beta, and in OpenAI's elsewhere."""

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"x-goog-api-key": key, **kwargs.pop("headers", {})}
        url = gateway.url + path
        return httpx.request(method, url, headers=headers, timeout=CLIENT_TIMEOUT_S, **kwargs)

    google_error(call("GET", "/v1beta/files"), 404, "NOT_FOUND")
    google_error(call("POST", "/v1beta/cachedContents", json={}), 404, "NOT_FOUND")
    google_error(call("GET", "/v1beta"), 404, "NOT_FOUND")
    wrong_method = call("PUT", f"/v1beta/models/{GPT}:generateContent", json={})
    google_error(wrong_method, 405, "UNIMPLEMENTED")
    assert set(wrong_method.headers["Allow"].split(",")) >= {"GET", "POST"}
    google_error(call("DELETE", "/v1beta/models"), 405, "UNIMPLEMENTED")
    for raw in (b"{", b"[]", b"null", b'{"contents": [}'):
        sent = {"content": raw, "headers": {"Content-Type": "application/json"}}
        said = google_error(
            call("POST", f"/v1beta/models/{GPT}:generateContent", **sent), 400, "INVALID_ARGUMENT"
        )
        assert "JSON" in said or "object" in said, said
    # Paths of OpenAI's API keep OpenAI's shape, also beside Gemini's under /v1.
    openai = call("GET", "/v1/no-such-api")
    assert openai.status_code == 404 and set(openai.json()["error"]) >= {"type", "code"}
    raw_body = {"content": b"{", "headers": {"Content-Type": "application/json"}}
    not_json = call("POST", f"/v1/models/{GPT}:generateContent", **raw_body)
    google_error(not_json, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("path", "claimed", "shape"),
    [
        ("/v1beta/models/gpt-4o:generateContent", False, "google"),
        ("/v1/models/gpt-4o:generateContent", True, "google"),
        ("/v1/chat/completions", False, "openai"),
        ("/v1betamax", False, "openai"),
    ],
)
@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")  # the app's keys
def test_an_unexpected_failure_is_a_500_in_the_paths_shape(
    path: str, claimed: bool, shape: str
) -> None:
    """The middleware's last resort, for a bug: the handler raises what nobody expected."""

    async def broken(request: web.Request) -> web.StreamResponse:
        if claimed:
            answer_errors_as_google(request)
        raise RuntimeError("a bug")

    async def run() -> web.StreamResponse:
        return await error_middleware(make_mocked_request("POST", path), broken)

    response = asyncio.run(run())
    assert isinstance(response, web.Response) and response.status == 500
    assert response.headers["x-request-id"]
    error = json.loads(response.body)["error"]  # type: ignore[arg-type]
    if shape == "google":
        assert error == {"code": 500, "message": error["message"], "status": "INTERNAL"}
    else:
        assert error["type"] == "server_error" and "status" not in error
    assert "a bug" not in error["message"]


@pytest.mark.parametrize("size", [[4], {"n": 4}, "four", True, 0, -3, 4.5, "²", "9" * 5000])
def test_a_wrong_output_dimensionality_is_a_400(gateway: Gateway, key: str, size: Any) -> None:
    url = f"{gateway.url}/v1beta/models/text-embedding-3-small"
    text = {"parts": [{"text": "hello"}]}
    bodies = {
        ":embedContent": {"content": text, "outputDimensionality": size},
        ":batchEmbedContents": {"requests": [{"content": text, "outputDimensionality": size}]},
    }
    mixed = {"requests": [{"content": text, "outputDimensionality": 4},
                          {"content": text, "outputDimensionality": size}]}  # fmt: skip
    for method, body in [*bodies.items(), (":batchEmbedContents", mixed)]:
        answer = httpx.post(url + method, params={"key": key}, json=body, timeout=CLIENT_TIMEOUT_S)
        said = google_error(answer, 400, "INVALID_ARGUMENT")
        assert "outputDimensionality" in said, said


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"generationConfig": {"maxOutputTokens": "²"}}, "maxOutputTokens"),
        ({"generationConfig": {"maxOutputTokens": "0"}}, "maxOutputTokens"),
        ({"generationConfig": {"candidateCount": "9" * 5000}}, "candidateCount"),
        ({"generationConfig": {"stopSequences": [1, {"a": 2}]}}, "stopSequences"),
        ({"generationConfig": {"responseSchema": {"type": "ARRAY", "minItems": "few"}}},
         "responseSchema.minItems"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "parameters": {
            "type": "OBJECT", "properties": {"a": {"type": "STRING", "maxLength": [3]}}}}]}]},
         "properties.a.maxLength"),
        ({"toolConfig": {"functionCallingConfig": {"mode": "ANY",
                                                   "allowedFunctionNames": [{"n": 1}]}}},
         "allowedFunctionNames"),
        ({"contents": [{"role": "user", "parts": [{"text": "hi"}]},
                       {"role": "model", "parts": [{"functionCall": {"name": ["f"]}}]}]},
         "functionCall.name"),
        ({"contents": [{"role": "user", "parts": [{"text": "hi"}]},
                       {"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
         "functionCall.args"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": 7}}]}]},
         "inlineData"),
        ({"contents": [{"parts": [{"fileData": {"mimeType": "image/png", "fileUri": {}}}]}]},
         "fileData"),
        ({"generationConfig": {"responseSchema": {"type": "OBJECT", "required": True}}},
         "responseSchema.required"),
        ({"generationConfig": {"responseSchema": {"type": ["OBJECT"]}}}, "responseSchema.type"),
        ({"generationConfig": {"responseJsonSchema": "an object"}}, "responseJsonSchema"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "parameters": {
            "type": "OBJECT", "properties": {"a": 5}}}]}]}, "properties.a"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": [1]}]}]},
         "parametersJsonSchema"),
    ],
)  # fmt: skip
def test_wrong_types_in_generate_content_are_400s(
    gateway: Gateway, ups: Upstreams, key: str, change: dict[str, Any], named: str
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **change}
    for method in ("generateContent", "countTokens"):
        answer = httpx.post(
            f"{gateway.url}/v1beta/models/{GPT}:{method}",
            headers={"x-goog-api-key": key},
            json=body,
            timeout=CLIENT_TIMEOUT_S,
        )
        assert named in google_error(answer, 400, "INVALID_ARGUMENT")
    assert ups.openai.received == []


def test_a_stream_that_breaks_ends_with_googles_error(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    ups.claude.drop_after = 4
    client = google(gateway, key)
    with pytest.raises(errors.APIError) as raised:
        list(client.models.generate_content_stream(model=CLAUDE, contents="a b c d"))
    assert raised.value.code == 502


def test_the_key_may_come_in_the_query(gateway: Gateway, ups: Upstreams, key: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1beta/models/{GPT}:generateContent",
        params={"key": key},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "Echo: hi"}]


def test_inline_pdf_and_audio_to_an_openai_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "read and listen"},
                    {"inline_data": {"mime_type": "application/pdf", "data": PNG}},
                    {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                ],
            }
        ]
    }
    response = httpx.post(
        f"{gateway.url}/v1beta/models/{GPT}:generateContent",
        headers={"x-goog-api-key": key},
        json=body,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    parts = ups.openai.received[-1].body["messages"][0]["content"]
    assert parts[1:] == [
        {
            "type": "file",
            "file": {"file_data": f"data:application/pdf;base64,{PNG}", "filename": "document.pdf"},
        },
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]


def test_images_and_json_schema_to_an_anthropic_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    response = client.models.generate_content(
        model=CLAUDE,
        contents=sdk_contents(
            [
                types.Part(text="what is this?"),
                types.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png"),
            ]
        ),
        config=config(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT,
                properties={"answer": types.Schema(type=types.Type.STRING)},
                required=["answer"],
            ),
        ),
    )
    assert json.loads(response.text or "") == {"answer": "example answer"}
    sent = ups.claude.received[-1].body
    image = sent["messages"][0]["content"][1]
    assert image == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert sent["output_config"]["format"]["type"] == "json_schema"


def test_images_and_json_schema_go_as_they_came_to_a_gemini_channel(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = google(gateway, key)
    schema = types.Schema(
        type=types.Type.OBJECT,
        properties={"answer": types.Schema(type=types.Type.STRING)},
        required=["answer"],
    )
    image = types.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png")
    seen = client.models.generate_content(
        model=GEMINI, contents=sdk_contents([types.Part(text="what is this?"), image])
    )
    assert seen.text == "Echo: what is this? (saw 1 image)"
    assert ups.gemini.received[-1].body["contents"][0]["parts"][1] == {
        "inlineData": {"data": PNG, "mime_type": "image/png"}
    }
    shaped = client.models.generate_content(
        model=GEMINI,
        contents="answer",
        config=config(response_mime_type="application/json", response_schema=schema),
    )
    assert json.loads(shaped.text or "") == {"answer": "example answer"}
    assert ups.gemini.received[-1].body["generationConfig"]["responseSchema"]["type"] == "OBJECT"


def test_a_key_in_the_query_is_never_logged(tmp_path: Path, fake: FakeOpenAI) -> None:
    server = Gateway(tmp_path, env={"OMNIRELAY_LOG_LEVEL": "debug", "OMNIRELAY_LOG_FORMAT": "json"})
    server.start()
    try:
        server.add_channel(
            name="query-key", base_url=fake.base_url, api_key=fake.api_key, models=[GPT]
        )
        key = server.create_key(name="query-key")
        hello = {"contents": [{"parts": [{"text": "hi"}]}]}
        generate = f"{server.url}/v1beta/models/{GPT}:generateContent"
        ok = httpx.post(generate, params={"key": key["key"]}, json=hello, timeout=30)
        assert ok.status_code == 200, ok.text
        fake.fail_next(500)  # an upstream failure, which the gateway logs
        failed = httpx.post(generate, params={"key": key["key"]}, json=hello, timeout=30)
        assert failed.status_code == 502, failed.text
        wrong = "sk-not-a-key-" + "x" * 32
        refused = httpx.post(generate, params={"key": wrong}, json=hello, timeout=30)
        assert refused.status_code == 401
        rows = server.admin("GET", f"/admin/logs?key_id={key['id']}").json()["data"]
        assert [row["status"] for row in rows] == [502, 200]
        assert key["key"] not in json.dumps(rows)
    finally:
        output = server.stop()
    assert output.strip()  # debug logging did write lines
    assert key["key"] not in output and wrong not in output
