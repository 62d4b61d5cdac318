"""CORS for browser clients: real preflights and real SDK requests carrying an Origin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from omnirelay.api.cors import Cors
from omnirelay.config import Settings
from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway

APP = "https://app.example"
EVIL = "https://evil.example"
HELLO: Any = [{"role": "user", "content": "hello"}]
OPENAI_BROWSER_HEADERS = (
    "authorization, content-type, openai-organization, openai-project, x-stainless-arch, "
    "x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-retry-count, "
    "x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout, "
    "x-stainless-helper-method"
)
ANTHROPIC_BROWSER_HEADERS = (
    "anthropic-dangerous-direct-browser-access, anthropic-version, content-type, x-api-key, "
    "x-stainless-lang, x-stainless-retry-count"
)


@pytest.fixture(scope="module")
def browsed(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("cors"),
        env={"OMNIRELAY_CORS_ORIGINS": f"{APP}/, https://other.example"},
    )
    server.start()
    server.add_channel(name="main", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=["gpt-4o"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(browsed: Gateway) -> str:
    return str(browsed.create_key(name="browser")["key"])


def preflight(gateway: Gateway, path: str, origin: str, headers: str) -> httpx.Response:
    return httpx.options(
        gateway.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
        timeout=10,
    )


def listed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def assert_cors(headers: Any, origin: str = APP) -> None:
    """``headers``: any case-insensitive mapping (the SDKs bring their own httpx)."""
    assert headers["Access-Control-Allow-Origin"] == origin
    assert listed(headers["Access-Control-Expose-Headers"]) == {"x-request-id", "retry-after"}
    assert "origin" in listed(headers["Vary"])
    assert "Access-Control-Allow-Credentials" not in headers


@pytest.mark.parametrize(
    ("path", "asked"),
    [
        ("/v1/chat/completions", OPENAI_BROWSER_HEADERS),
        ("/v1/messages", ANTHROPIC_BROWSER_HEADERS),
        ("/v1/models", "authorization, x-stainless-some-future-header"),
    ],
)
def test_a_preflight_from_an_allowed_origin(browsed: Gateway, path: str, asked: str) -> None:
    response = preflight(browsed, path, APP, asked)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert {"get", "post"} <= listed(response.headers["Access-Control-Allow-Methods"])
    assert listed(asked) <= listed(response.headers["Access-Control-Allow-Headers"])
    assert int(response.headers["Access-Control-Max-Age"]) == 600
    assert "origin" in listed(response.headers["Vary"])


def test_a_preflight_from_another_origin_gets_no_cors_headers(browsed: Gateway) -> None:
    response = preflight(browsed, "/v1/chat/completions", EVIL, "authorization")
    assert response.status_code == 405
    assert not [name for name in response.headers if name.lower().startswith("access-control")]
    # An origin is compared whole, not by prefix.
    response = preflight(browsed, "/v1/chat/completions", APP + ".evil.example", "authorization")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_openai_sdk_with_an_origin(browsed: Gateway, key: str) -> None:
    client = openai.OpenAI(
        base_url=browsed.base_url,
        api_key=key,
        max_retries=0,
        default_headers={"Origin": APP},
        timeout=CLIENT_TIMEOUT_S,
    )
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    assert raw.parse().choices[0].message.content
    assert_cors(raw.headers)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=HELLO, stream=True
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert_cors(stream.headers)
        assert any(line.startswith("data: ") for line in stream.iter_lines())
    models = client.models.with_raw_response.list()
    assert_cors(models.headers)


def test_the_anthropic_sdk_with_an_origin(browsed: Gateway, key: str) -> None:
    client = anthropic.Anthropic(
        base_url=browsed.url,
        api_key=key,
        max_retries=0,
        default_headers={"Origin": APP},
        timeout=CLIENT_TIMEOUT_S,
    )
    raw = client.messages.with_raw_response.create(model="gpt-4o", max_tokens=20, messages=HELLO)
    assert raw.parse().content
    assert_cors(raw.headers)


def test_errors_carry_cors_headers_too(browsed: Gateway, key: str) -> None:
    client = openai.OpenAI(
        base_url=browsed.base_url,
        api_key="sk-wrong",
        max_retries=0,
        default_headers={"Origin": APP},
        timeout=CLIENT_TIMEOUT_S,
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert_cors(raised.value.response.headers)
    unknown = httpx.get(browsed.base_url + "/nope", headers={"Origin": APP})
    assert unknown.status_code == 404
    assert_cors(unknown.headers)


def test_another_origin_gets_no_cors_headers_on_real_requests(browsed: Gateway, key: str) -> None:
    response = httpx.post(
        browsed.base_url + "/chat/completions",
        headers={"Origin": EVIL, "Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o", "messages": HELLO},
        timeout=10,
    )
    assert response.status_code == 200  # served: CORS is the browser's to enforce
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Expose-Headers" not in response.headers
    assert "origin" in listed(response.headers["Vary"])


def test_cors_is_off_by_default(gateway: Gateway, api_key: str) -> None:
    response = preflight(gateway, "/v1/chat/completions", APP, "authorization")
    assert response.status_code == 405
    response = httpx.get(
        gateway.base_url + "/models",
        headers={"Origin": APP, "Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("access-control")]
    assert "Vary" not in response.headers


def test_origin_settings() -> None:
    def origins(value: Any) -> list[str]:
        return Settings(cors_origins=value).cors_origins

    assert origins("*") == ["*"]
    assert origins(" https://A.example/ ,https://b.example") == [
        "https://a.example",
        "https://b.example",
    ]
    assert origins(["https://c.example"]) == ["https://c.example"]
    assert Settings().cors_origins == []
    anyone = Cors(["*"], 600)
    assert anyone.allow_origin("https://whoever.example") == "*"
    assert anyone.allow_origin(None) is None
