"""Gemini's and Azure's paths are charged exactly as Chat Completions, and every key's
allowlists and limits hold on each of them (they all begin as every call does)."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.gateway import Gateway
from support.inbound import CLAUDE, GEMINI, GPT, Upstreams, upstreams

GROUP = "inbound-metering"
CHARGED = (
    "model",
    "channel_id",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nano",
    "usage_source",
    "status",
    "stream",
)
AZURE = "?api-version=2024-10-21"
CITY = {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def every_channel(gateway: Gateway) -> Iterator[Upstreams]:
    with upstreams(gateway, GROUP) as found:
        yield found


@pytest.fixture
def ups(every_channel: Upstreams) -> Upstreams:
    every_channel.reset()
    return every_channel


def post(gateway: Gateway, path: str, body: Any, key: str, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {key}", **headers}
    return httpx.post(gateway.url + path, json=body, headers=sent, timeout=30)


def charged(gateway: Gateway, key: Any) -> dict[str, Any]:
    """What the key's one call was charged: its log row, and the key's spend."""
    rows = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
    assert len(rows) == 1, rows
    spent = gateway.admin("GET", f"/admin/keys/{key.id}").json()
    return {**{name: rows[0][name] for name in CHARGED}, "spent": spent["used_nano"]}


def gemini_call(model: str, action: str) -> str:
    suffix = "?alt=sse" if action == "streamGenerateContent" else ""
    return f"/v1beta/models/{model}:{action}{suffix}"


ASKED = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [{"role": "user", "parts": [{"text": "how much does this one cost"}]}],
    "generationConfig": {"maxOutputTokens": 60, "temperature": 0.2},
}
WITH_TOOLS = {
    "contents": [{"role": "user", "parts": [{"text": "weather in two cities"}]}],
    "tools": [
        {
            "functionDeclarations": [
                {"name": "get_weather", "parameters": CITY},
                {"name": "get_time", "parameters": CITY},
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
}


@pytest.mark.parametrize(
    ("model", "body", "stream"),
    [
        (GPT, ASKED, False),
        (GPT, ASKED, True),
        (GPT, WITH_TOOLS, False),
        (GPT, WITH_TOOLS, True),
        (CLAUDE, ASKED, False),
        (CLAUDE, WITH_TOOLS, True),
        (GEMINI, ASKED, False),
        (GEMINI, ASKED, True),
        (GEMINI, WITH_TOOLS, True),
    ],
    ids=[
        "openai",
        "openai-stream",
        "openai-tools",
        "openai-tools-stream",
        "anthropic",
        "anthropic-tools-stream",
        "gemini-native",
        "gemini-native-stream",
        "gemini-native-tools-stream",
    ],
)
def test_a_gemini_call_costs_what_the_same_chat_completion_costs(
    gateway: Gateway, ups: Upstreams, make_key: Any, model: str, body: Any, stream: bool
) -> None:
    action = "streamGenerateContent" if stream else "generateContent"
    google = make_key(group=GROUP)
    answer = post(gateway, gemini_call(model, action), body, google)
    assert answer.status_code == 200, answer.text
    # The same call as Chat Completions: the canonical body the Gemini call became.
    same: dict[str, Any] = {
        "model": model,
        "messages": [
            *([{"role": "system", "content": "Be brief."}] if "systemInstruction" in body else []),
            {"role": "user", "content": body["contents"][0]["parts"][0]["text"]},
        ],
    }
    if "generationConfig" in body:
        same.update(max_tokens=60, temperature=0.2)
    if "tools" in body:
        same["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "parameters": {
                        "type": "object",
                        "required": ["city"],
                        "properties": {"city": {"type": "string"}},
                    },
                },
            }
            for name in ("get_weather", "get_time")
        ]
        same["tool_choice"] = "required"
    if stream:
        same["stream"] = True
    chat = make_key(group=GROUP)
    completed = post(gateway, "/v1/chat/completions", same, chat)
    assert completed.status_code == 200, completed.text
    gemini_charge, chat_charge = charged(gateway, google), charged(gateway, chat)
    assert gemini_charge == chat_charge
    assert gemini_charge["cost_nano"] > 0 and gemini_charge["completion_tokens"] > 0


def test_embeddings_cost_what_v1_embeddings_costs(
    gateway: Gateway, ups: Upstreams, make_key: Any
) -> None:
    for model in ("text-embedding-3-small", "gemini-embedding-001"):
        texts = ["one two three", "four five"]
        google = make_key(group=GROUP)
        requests = [{"content": {"parts": [{"text": text}]}} for text in texts]
        empty = post(gateway, gemini_call(model, "batchEmbedContents"), {}, google)
        assert empty.status_code == 400  # refused, and not charged: one row below
        embedded = httpx.post(
            gateway.url + gemini_call(model, "batchEmbedContents"),
            json={"requests": requests},
            headers={"x-goog-api-key": google},
            timeout=30,
        )
        assert embedded.status_code == 200, embedded.text
        openai_style = make_key(group=GROUP)
        same = post(gateway, "/v1/embeddings", {"model": model, "input": texts}, openai_style)
        assert same.status_code == 200, same.text
        azure = make_key(group=GROUP)
        deployed = post(
            gateway, f"/openai/deployments/{model}/embeddings{AZURE}", {"input": texts}, azure
        )
        assert deployed.status_code == 200, deployed.text
        assert charged(gateway, google) == charged(gateway, openai_style) == charged(gateway, azure)
        assert charged(gateway, google)["cost_nano"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_an_azure_call_costs_what_the_same_chat_completion_costs(
    gateway: Gateway, ups: Upstreams, make_key: Any, stream: bool
) -> None:
    body = {"messages": [{"role": "user", "content": "one two three"}], "stream": stream}
    azure = make_key(group=GROUP)
    answer = post(
        gateway, f"/openai/deployments/{GEMINI}/chat/completions{AZURE}", body, azure,
        **{"api-key": str(azure), "Authorization": ""},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    chat = make_key(group=GROUP)
    assert post(gateway, "/v1/chat/completions", {**body, "model": GEMINI}, chat).is_success
    assert charged(gateway, azure) == charged(gateway, chat)


# -- allowlists and limits on every new path -----------------------------------------------


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00" * 8000)
    return buffer.getvalue()


HELLO = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
MESSAGES = [{"role": "user", "content": "hi"}]
PATHS: list[tuple[str, Any]] = [
    (f"/v1beta/models/{GPT}:generateContent", HELLO),
    (f"/v1/models/{GPT}:generateContent", HELLO),
    (f"/v1beta/models/{GPT}:streamGenerateContent?alt=sse", HELLO),
    ("/v1beta/models/text-embedding-3-small:embedContent", {"content": HELLO["contents"][0]}),
    (
        "/v1beta/models/text-embedding-3-small:batchEmbedContents",
        {"requests": [{"content": HELLO["contents"][0]}]},
    ),
    (f"/openai/deployments/{GPT}/chat/completions{AZURE}", {"messages": MESSAGES}),
    (f"/openai/deployments/gpt-3.5-turbo-instruct/completions{AZURE}", {"prompt": "hi"}),
    (f"/openai/deployments/text-embedding-3-small/embeddings{AZURE}", {"input": "hi"}),
    (f"/openai/deployments/dall-e-3/images/generations{AZURE}", {"prompt": "a cat"}),
    (f"/openai/deployments/tts-1/audio/speech{AZURE}", {"input": "hi", "voice": "alloy"}),
    (f"/openai/deployments/whisper-1/audio/transcriptions{AZURE}", None),
    ("/openai/v1/chat/completions", {"model": GPT, "messages": MESSAGES}),
]
FREE_PATHS: list[tuple[str, Any]] = [(f"/v1beta/models/{GPT}:countTokens", HELLO)]


def path_id(value: Any) -> str:
    return value.split("?")[0] if isinstance(value, str) else ""


def call(gateway: Gateway, path: str, body: Any, key: str) -> httpx.Response:
    """One call, with the key where each dialect's SDK puts it."""
    if path.startswith("/v1beta") or path.startswith("/v1/models"):
        headers = {"x-goog-api-key": key}
    elif path.startswith("/openai/deployments"):
        headers = {"api-key": key}
    else:
        headers = {"Authorization": f"Bearer {key}"}
    if body is None:
        files = {"file": ("a.wav", _wav(), "audio/wav")}
        return httpx.post(gateway.url + path, files=files, headers=headers, timeout=30)
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=30)


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    # Gemini's paths answer in Google's shape, the Azure ones in OpenAI's.
    return str(error.get("status") or error.get("code"))


@pytest.mark.parametrize(
    ("path", "body"),
    PATHS + FREE_PATHS,
    ids=lambda v: v.split("?")[0] if isinstance(v, str) else "",
)
def test_the_address_allowlist_holds(
    gateway: Gateway, ups: Upstreams, make_key: Any, path: str, body: Any
) -> None:
    elsewhere = make_key(group=GROUP, limits={"allowed_ips": ["10.9.8.0/24"]})
    assert refused(call(gateway, path, body, elsewhere), 403) in (
        "PERMISSION_DENIED",
        "ip_not_allowed",
    )
    here = make_key(group=GROUP, limits={"allowed_ips": ["127.0.0.0/8"]})
    answered = call(gateway, path, body, here)
    assert answered.status_code == 200, answered.text


@pytest.mark.parametrize(
    ("path", "body"),
    PATHS + FREE_PATHS,
    ids=lambda v: v.split("?")[0] if isinstance(v, str) else "",
)
def test_the_model_allowlist_holds(
    gateway: Gateway, ups: Upstreams, make_key: Any, path: str, body: Any
) -> None:
    narrow = make_key(group=GROUP, models=[CLAUDE])
    assert refused(call(gateway, path, body, narrow), 403) in (
        "PERMISSION_DENIED",
        "model_not_allowed",
    )
    assert ups.openai.received == []


@pytest.mark.parametrize(
    ("path", "body"), PATHS, ids=lambda v: v.split("?")[0] if isinstance(v, str) else ""
)
def test_the_rate_limit_holds(
    gateway: Gateway, ups: Upstreams, make_key: Any, path: str, body: Any
) -> None:
    once = make_key(group=GROUP, limits={"rpm": 1})
    first = call(gateway, path, body, once)
    assert first.status_code == 200, first.text
    second = call(gateway, path, body, once)
    assert refused(second, 429) in ("RESOURCE_EXHAUSTED", "rate_limit_exceeded")
    assert int(second.headers["Retry-After"]) >= 1
