"""OpenAI-compatible vendors as presets: data, registry, quirks, and one through the gateway."""

from __future__ import annotations

import json
import secrets
from typing import Any

import openai
import pytest

from omnirelay.providers.base import Endpoint
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.providers.presets import Quirks, default_base_url, preset_at, presets
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.providers.tasks.registry import TASK_CHANNEL_TYPES
from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway

VENDORS = {
    "deepseek",
    "moonshot",
    "qwen",
    "zhipu",
    "siliconflow",
    "openrouter",
    "groq",
    "mistral",
    "xai",
    "together",
    "ollama",
    "vllm",
    "llamacpp",
    "lmstudio",
}


def test_every_vendor_is_a_preset_and_a_channel_type() -> None:
    found = presets()
    assert set(found) == VENDORS
    types = ProviderRegistry().types
    natives = {"openai", "azure", "anthropic", "gemini", "cohere", *TASK_CHANNEL_TYPES}
    assert VENDORS | natives == set(types)
    for preset in found.values():
        local = preset.name in ("ollama", "vllm", "llamacpp", "lmstudio")
        assert preset.base_url.startswith("http://localhost:" if local else "https://")
    assert default_base_url("gemini") == "https://generativelanguage.googleapis.com/v1beta"
    assert default_base_url("nope") is None


def request(quirks: Quirks, body: dict[str, Any], stream: bool, **options: Any) -> Any:
    endpoint = Endpoint(base_url="https://vendor.example/v1", api_key="sk-v", options=options)
    sent = OpenAIProvider(quirks).chat_request(endpoint, body, "m-upstream", stream)
    return sent, json.loads(sent.body)


def test_quirks_rename_drop_and_auth() -> None:
    mistral = presets()["mistral"].quirks
    body = {"model": "m", "messages": [], "max_completion_tokens": 9, "seed": 3, "user": "u"}
    sent, payload = request(mistral, {**body, "stream_options": {"include_usage": True}}, True)
    assert payload == {"model": "m-upstream", "messages": [], "max_tokens": 9, "random_seed": 3}
    assert sent.headers["Authorization"] == "Bearer sk-v"
    ollama = presets()["ollama"].quirks
    sent, payload = request(ollama, body, True)
    assert "Authorization" not in sent.headers
    assert payload["stream_options"] == {"include_usage": True} and payload["max_tokens"] == 9
    # A channel's options override its preset's quirks.
    sent, payload = request(Quirks(), body, True, stream_usage=False, auth="api-key")
    assert "stream_options" not in payload and sent.headers["api-key"] == "sk-v"


# How each preset sends max_completion_tokens: renamed where the vendor documents only
# max_tokens, as is where it documents max_completion_tokens, and as both where its
# versions differ (docs/providers.md).
MAX_TOKENS_FIELDS = {
    **{vendor: {"max_tokens"} for vendor in VENDORS - {"groq", "xai", "vllm"}},
    "groq": {"max_completion_tokens"},
    "xai": {"max_completion_tokens"},
    "vllm": {"max_completion_tokens", "max_tokens"},
}


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_each_preset_sends_max_completion_tokens_under_the_names_it_knows(vendor: str) -> None:
    body = {"model": "m", "messages": [], "max_completion_tokens": 9}
    _, payload = request(presets()[vendor].quirks, body, False)
    sent = {name for name in ("max_tokens", "max_completion_tokens") if name in payload}
    assert sent == MAX_TOKENS_FIELDS[vendor]
    assert all(payload[name] == 9 for name in sent)
    # A client that sends both keeps its own max_tokens.
    _, payload = request(presets()[vendor].quirks, {**body, "max_tokens": 4}, False)
    assert payload["max_tokens"] == 4


def test_copy_is_a_channel_option_too() -> None:
    body = {"model": "m", "messages": [], "max_completion_tokens": 9}
    _, payload = request(Quirks(), body, False, copy={"max_completion_tokens": "max_tokens"})
    assert (payload["max_completion_tokens"], payload["max_tokens"]) == (9, 9)


def test_plain_openai_body_is_untouched() -> None:
    body = {"model": "m-upstream", "messages": [], "max_tokens": 5, "seed": 1}
    _, payload = request(Quirks(), body, False, headers={"X-A": "1"})
    assert payload == body


@pytest.mark.parametrize("vendor", ["deepseek", "zhipu"])
def test_preset_channel_through_the_gateway(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any, vendor: str
) -> None:
    group = f"preset-{vendor}"
    gateway.add_channel(
        name=group,
        type=vendor,
        base_url=fake.base_url,
        api_key=fake.api_key,
        models=["deepseek-chat"],
        model_mapping={"deepseek-chat": "gpt-4o"},
        group=group,
    )
    key = make_key(group=group)
    chat = openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ).chat.completions
    text = "".join(
        c.choices[0].delta.content or ""
        for c in chat.create(
            model="deepseek-chat",
            messages=[{"role": "user", "content": "hello preset"}],
            max_completion_tokens=20,
            stream=True,
        )
        if c.choices
    )
    assert text == "Echo: hello preset"
    sent = fake.received[-1].body
    assert sent["max_tokens"] == 20 and "max_completion_tokens" not in sent
    row = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"][0]
    if vendor == "zhipu":  # no stream_options sent: the gateway counted the tokens itself
        assert "stream_options" not in sent and row["usage_source"] == "counted"
    else:
        assert sent["stream_options"] == {"include_usage": True}
        assert row["usage_source"] == "upstream"


@pytest.mark.parametrize("vendor", ["openrouter", "groq", "vllm"])
def test_max_completion_tokens_through_the_gateway(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any, vendor: str
) -> None:
    group = f"max-tokens-{vendor}"
    gateway.add_channel(
        name=group, type=vendor, base_url=fake.base_url, api_key=fake.api_key,
        models=["gpt-4o"], group=group,
    )  # fmt: skip
    client = openai.OpenAI(
        base_url=gateway.base_url,
        api_key=make_key(group=group),
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    answer = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three"}],
        max_completion_tokens=2,
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "length"  # the fake obeyed the limit it got
    sent = fake.received[-1].body
    assert {name for name in ("max_tokens", "max_completion_tokens") if name in sent} == (
        MAX_TOKENS_FIELDS[vendor]
    )
    assert all(sent[name] == 2 for name in MAX_TOKENS_FIELDS[vendor])


@pytest.mark.parametrize(
    ("base_url", "preset"),
    [
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:1234/v1", "lmstudio"),
        ("http://[::1]:8000/v1", "vllm"),
        ("http://localhost:8080", "llamacpp"),
        ("https://api.deepseek.com", "deepseek"),
        ("http://10.1.2.3:11434/v1", None),  # another machine: maybe not Ollama at all
        ("http://localhost:9999/v1", None),
        ("https://api.openai.com/v1", None),
        ("not a url", None),
    ],
)
def test_which_addresses_are_a_presets(base_url: str, preset: str | None) -> None:
    assert preset_at(base_url) == preset


def test_channel_add_warns_when_an_openai_channel_sits_at_a_presets_address(
    gateway: Gateway,
) -> None:
    def add(name: str, channel_type: str) -> str:
        result = gateway.cli(
            "channel", "add", "--name", name, "--type", channel_type, "--group", "cli-only",
            "--base-url", "http://127.0.0.1:11434/v1", "--api-key", "k", "--models", "llama3",
        )  # fmt: skip
        return result.stderr

    lines = add("warn-ollama", "openai").splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), lines
    assert "--type ollama" in lines[0] and "http://127.0.0.1:11434/v1" in lines[0]
    assert add("quiet-ollama", "ollama") == ""


def test_base_url_defaults_to_the_presets(gateway: Gateway) -> None:
    created = gateway.add_channel(
        name="groq-default", type="groq", api_key="gsk-x", models=["llama-3.3-70b"], enabled=False
    )
    assert created["base_url"] == "https://api.groq.com/openai/v1"
    missing = gateway.admin(
        "POST",
        "/admin/channels",
        {"name": "x", "type": "openai", "api_key": "k", "models": ["m"], "enabled": False},
    )
    assert missing.status_code == 201  # openai has a default too
    clash = gateway.admin(
        "POST",
        "/admin/channels",
        {"name": "y", "type": "azure", "api_key": "k", "models": ["m"], "options": {"headers": {}}},
    )
    assert clash.status_code == 400 and "own field" in clash.json()["error"]["message"]


def test_cli_takes_dialect_options_and_default_base_urls(gateway: Gateway) -> None:
    gateway.cli(
        "channel", "add", "--name", "cli-azure", "--type", "azure", "--group", "cli-only",
        "--base-url", "https://res.openai.azure.com", "--api-key", "k", "--models", "gpt-4o",
        "--option", "api_version=v1", "--option", "stream_usage=false",
    )  # fmt: skip
    gateway.cli(
        "channel", "add", "--name", "cli-claude", "--type", "anthropic", "--group", "cli-only",
        "--api-key", "k", "--models", "claude-sonnet-4-0",
    )  # fmt: skip
    channels = {c["name"]: c for c in gateway.admin("GET", "/admin/channels").json()["data"]}
    assert channels["cli-azure"]["options"] == {"api_version": "v1", "stream_usage": False}
    assert channels["cli-claude"]["base_url"] == "https://api.anthropic.com/v1"
    bad = gateway.cli("channel", "add", "--name", "x", "--type", "nope", "--api-key", "k",
                      "--models", "m", check=False)  # fmt: skip
    assert bad.returncode != 0 and "Unknown channel type" in bad.stderr


def test_patching_options_replaces_the_dialects_and_keeps_the_rest(gateway: Gateway) -> None:
    created = gateway.add_channel(
        name="patch-azure",
        type="azure",
        base_url="https://res.openai.azure.com",
        api_key="k",
        models=["gpt-4o"],
        group="patch-only",
        enabled=False,
        headers={"X-Team": "a"},
        options={"api_version": "2024-10-21", "deployment": "d1"},
    )
    assert created["options"] == {
        "api_version": "2024-10-21",
        "deployment": "d1",
        "headers": {"X-Team": "****"},  # header values are secrets: never shown
    }
    path = f"/admin/channels/{created['id']}"
    patched = gateway.admin("PATCH", path, {"options": {"api_version": "v1"}}).json()
    assert patched["options"] == {"api_version": "v1", "headers": {"X-Team": "****"}}
    patched = gateway.admin("PATCH", path, {"headers": {"X-Group": "b"}}).json()
    assert patched["options"] == {"api_version": "v1", "headers": {"X-Group": "****"}}


def test_channel_headers_are_sent_upstream_but_never_shown(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    secret = "org-" + secrets.token_hex(12)
    group = "headers-" + secrets.token_hex(4)
    created = gateway.add_channel(
        name=group,
        base_url=fake.base_url,
        api_key=UPSTREAM_KEY,
        models=["gpt-4o"],
        group=group,
        headers={"OpenAI-Organization": secret},
    )
    path = f"/admin/channels/{created['id']}"
    assert created["options"] == {"headers": {"OpenAI-Organization": "****"}}
    for view in (gateway.admin("GET", path), gateway.admin("GET", "/admin/channels")):
        assert view.status_code == 200 and secret not in view.text
    client = openai.OpenAI(
        base_url=gateway.base_url, api_key=make_key(group=group), max_retries=0, timeout=30
    )

    def sent_upstream() -> str | None:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        return fake.received[-1].headers.get("openai-organization")

    assert sent_upstream() == secret
    # An update without headers keeps them; one with headers replaces them.
    patched = gateway.admin("PATCH", path, {"priority": 2})
    assert secret not in patched.text and patched.json()["priority"] == 2
    assert sent_upstream() == secret
    rotated = "org-" + secrets.token_hex(12)
    patched = gateway.admin("PATCH", path, {"headers": {"OpenAI-Organization": rotated}})
    assert rotated not in patched.text
    assert sent_upstream() == rotated
    gateway.admin("PATCH", path, {"headers": {}})
    assert sent_upstream() is None
    gateway.admin("DELETE", path)

    # The CLI sets them too, and lists their names only.
    gateway.cli(
        "channel", "add", "--name", group + "-cli", "--group", group + "-cli",
        "--api-key", "k", "--models", "gpt-4o", "--header", f"X-Cli-Secret: {secret}",
    )  # fmt: skip
    listed = gateway.cli("channel", "list").stdout
    assert "X-Cli-Secret: ****" in listed and secret not in listed
    (cli_channel,) = [
        c
        for c in gateway.admin("GET", "/admin/channels").json()["data"]
        if c["name"] == group + "-cli"
    ]
    assert cli_channel["options"] == {"headers": {"X-Cli-Secret": "****"}}
    gateway.admin("DELETE", f"/admin/channels/{cli_channel['id']}")
