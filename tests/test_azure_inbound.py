"""openai SDK's AzureOpenAI (and plain OpenAI on Azure's v1 API) -> gateway's Azure paths ->
OpenAI and Gemini channels, and back."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_openai_more import PNG
from support.gateway import Gateway
from support.inbound import CLAUDE, GEMINI, GEMINI_MODELS, OPENAI_MODELS, Upstreams, upstreams

GROUP = "azure-inbound"
API_VERSION = "2024-10-21"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [
    {"type": "function", "function": {"name": name, "parameters": CITY}}
    for name in ("get_weather", "get_time")
]


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


def azure(gateway: Gateway, key: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=gateway.url,
        api_key=key,
        api_version=API_VERSION,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )


def validate(path: str, result: Any) -> None:
    body = result.model_dump(mode="json", exclude_unset=True)
    openapi.validate_response("POST", path, 200, body)


def wav(seconds: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00" * 8000 * seconds)
    return buffer.getvalue()


# -- chat ----------------------------------------------------------------------------------


def test_chat_and_stream_on_a_deployment(gateway: Gateway, ups: Upstreams, key: str) -> None:
    client = azure(gateway, key)
    hello: Any = [{"role": "user", "content": "hello there"}]
    completion = client.chat.completions.create(model="gpt-4o", messages=hello)
    validate("/v1/chat/completions", completion)
    assert completion.choices[0].message.content == "Echo: hello there"
    sent = ups.openai.received[-1]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "gpt-4o"
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=hello, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_the_deployment_is_the_model(gateway: Gateway, ups: Upstreams, key: str) -> None:
    response = httpx.post(
        f"{gateway.url}/openai/deployments/gpt-4o/chat/completions",
        params={"api-version": API_VERSION},
        headers={"api-key": key},
        json={"model": "something-else", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert ups.openai.received[-1].body["model"] == "gpt-4o"
    bearer = httpx.post(
        f"{gateway.url}/openai/deployments/gpt-4o/chat/completions?api-version=2025-04-01-preview",
        headers={"Authorization": f"Bearer {key}"},
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert bearer.status_code == 200, bearer.text
    wrong = httpx.post(
        f"{gateway.url}/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}",
        headers={"api-key": "sk-wrong"},
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_azure_client_to_a_gemini_channel_with_tools_and_streams(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = azure(gateway, key)
    asked: Any = [{"role": "user", "content": "weather and time"}]
    completion = client.chat.completions.create(
        model=GEMINI, messages=asked, tools=TOOLS, tool_choice="required"
    )
    validate("/v1/chat/completions", completion)
    calls = completion.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "example city"}),
        ("get_time", {"city": "example city"}),
    ]
    assert ups.gemini.received[-1].path == f"/v1beta/models/{GEMINI}:generateContent"
    streamed: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(
        model=GEMINI, messages=asked, tools=TOOLS, tool_choice="required", stream=True
    ):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = streamed.setdefault(delta.index, {"name": "", "arguments": ""})
            entry["name"] += (delta.function and delta.function.name) or ""
            entry["arguments"] += (delta.function and delta.function.arguments) or ""
    assert [e["name"] for e in streamed.values()] == ["get_weather", "get_time"]
    # The results go back, and Gemini gets each call answered by name.
    turn: Any = [
        *asked,
        completion.choices[0].message.model_dump(exclude_none=True),
        *[{"role": "tool", "tool_call_id": call.id, "content": '{"ok": true}'} for call in calls],
    ]
    answer = client.chat.completions.create(model=GEMINI, messages=turn, tools=TOOLS)
    assert answer.choices[0].message.content == 'Tool results: {"ok":true}; {"ok":true}'
    parts = ups.gemini.received[-1].body["contents"][-1]["parts"]
    assert [p["functionResponse"]["name"] for p in parts] == ["get_weather", "get_time"]
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=GEMINI, messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        if chunk.choices
    )
    assert text == "Echo: one two three"


# -- the operations beyond chat ------------------------------------------------------------


def test_completions_embeddings_and_images_on_deployments(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = azure(gateway, key)
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    validate("/v1/completions", completion)
    assert ups.openai.received[-1].body["model"] == "gpt-3.5-turbo-instruct"
    streamed = list(
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices)
    embedded = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    validate("/v1/embeddings", embedded)
    assert len(embedded.data) == 2 and embedded.usage.prompt_tokens == 2
    image = client.images.generate(model="dall-e-3", prompt="a red bicycle", size="1024x1024")
    validate("/v1/images/generations", image)
    assert ups.openai.received[-1].path == "/v1/images/generations"
    edited = client.images.edit(
        model="dall-e-2", image=("cat.png", PNG + b"pixels", "image/png"), prompt="a hat"
    )
    assert edited.data and ups.openai.received[-1].path == "/v1/images/edits"


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # translations, the SDK's
def test_speech_and_transcription_on_deployments(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = azure(gateway, key)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from Azure."
    ) as response:
        assert len(response.read()) > 0
    assert ups.openai.received[-1].body["model"] == "tts-1"
    upload = ("note.wav", wav(3), "audio/wav")
    result = client.audio.transcriptions.create(model="whisper-1", file=upload)
    assert result.text == "Hello from the fake transcriber."
    sent = ups.openai.received[-1]
    assert sent.path == "/v1/audio/transcriptions" and sent.body["model"] == "whisper-1"
    translated = client.audio.translations.create(model="whisper-1", file=upload)
    assert translated.text and ups.openai.received[-1].path == "/v1/audio/translations"


# -- Azure's v1 API: the plain OpenAI client ----------------------------------------------


def test_the_plain_openai_client_on_azures_v1_api(
    gateway: Gateway, ups: Upstreams, key: str
) -> None:
    client = openai.OpenAI(
        base_url=gateway.url + "/openai/v1/", api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    hello: Any = [{"role": "user", "content": "hello there"}]
    completion = client.chat.completions.create(model=GEMINI, messages=hello)
    validate("/v1/chat/completions", completion)
    assert completion.choices[0].message.content == "Echo: hello there"
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=hello, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    embedded = client.embeddings.create(model="text-embedding-3-small", input="one two")
    assert embedded.usage.prompt_tokens == 2
    assert {m.id for m in client.models.list()} == {*OPENAI_MODELS, *GEMINI_MODELS, CLAUDE}
    # Azure's own header works there too.
    azure_style = openai.OpenAI(
        base_url=gateway.url + "/openai/v1/",
        api_key="unused",
        default_headers={"api-key": key, "Authorization": ""},
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    assert azure_style.chat.completions.create(model="gpt-4o", messages=hello).choices
