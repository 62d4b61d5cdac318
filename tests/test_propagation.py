"""Admin changes reach a running gateway within a second, with no restart."""

from __future__ import annotations

from typing import Any

import httpx

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until


def status(gateway: Gateway, key: str, model: str = "gpt-4o") -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=10,
    )
    return response.status_code


def test_admin_api_changes_apply_at_once(gateway: Gateway, make_key: Any) -> None:
    key = make_key()
    assert status(gateway, key) == 200
    response = gateway.admin("PATCH", f"/admin/keys/{key.id}", {"enabled": False})
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert status(gateway, key) == 401
    gateway.admin("PATCH", f"/admin/keys/{key.id}", {"enabled": True})
    assert status(gateway, key) == 200
    gateway.admin("PATCH", f"/admin/keys/{key.id}", {"models": ["gpt-4o-mini"]})
    assert status(gateway, key) == 403
    assert gateway.admin("DELETE", f"/admin/keys/{key.id}").status_code == 200
    assert status(gateway, key) == 401


def test_cli_changes_reach_the_running_gateway_within_a_second(
    gateway: Gateway, fake: FakeOpenAI
) -> None:
    created = gateway.cli("key", "create", "--name", "cli-made")
    key = created.stdout.strip()
    wait_until(lambda: status(gateway, key) == 200, timeout=1.0)

    key_id = next(
        k["id"]
        for k in gateway.admin("GET", "/admin/keys").json()["data"]
        if k["name"] == "cli-made"
    )
    gateway.cli("key", "update", str(key_id), "--disable")
    wait_until(lambda: status(gateway, key) == 401, timeout=1.0)
    gateway.cli("key", "update", str(key_id), "--enable", "--quota-usd", "0")
    wait_until(lambda: status(gateway, key) == 429, timeout=1.0)
    gateway.cli("key", "update", str(key_id), "--unlimited")
    wait_until(lambda: status(gateway, key) == 200, timeout=1.0)

    # A new channel, and a new model with it, become routable.
    assert status(gateway, key, "gpt-4.1") == 404
    fake.models = [*fake.models, "gpt-4.1"]
    gateway.cli(
        "channel", "add", "--name", "second", "--base-url", fake.base_url,
        "--api-key", UPSTREAM_KEY, "--models", "gpt-4.1",
    )  # fmt: skip
    wait_until(lambda: status(gateway, key, "gpt-4.1") == 200, timeout=1.0)
    gateway.cli("channel", "disable", "second")
    wait_until(lambda: status(gateway, key, "gpt-4.1") == 404, timeout=1.0)
    gateway.cli("channel", "remove", "second")


def test_price_override_changes_the_charge(gateway: Gateway, make_key: Any) -> None:
    key = make_key()
    gateway.cli("price", "set", "gpt-4o-mini", "--input", "1", "--output", "1")

    def charged_at_new_price() -> bool:
        assert status(gateway, key, "gpt-4o-mini") == 200
        row = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"][0]
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        return bool(row["cost_nano"] == tokens * 1_000)  # $1 per 1M tokens

    wait_until(charged_at_new_price, timeout=1.0)
    gateway.cli("price", "remove", "gpt-4o-mini")
