"""Prices and group multipliers through the admin API and the CLI, against the real gateway.

``GET /admin/prices/{model}`` answers from the serving process's memory, so it shows that a
change made by another process (the CLI) arrived within a second.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from support.gateway import Gateway, wait_until

FULL_PRICE = {
    "input_usd_per_m": "1",
    "output_usd_per_m": "2",
    "cached_input_usd_per_m": "0.5",
    "cache_write_usd_per_m": "1.25",
    "per_call_usd": "0.001",
    "images_usd": {"1024x1024/hd": "0.08", "512x512": "0.018"},
    "audio_usd_per_second": "0.0001",
    "speech_usd_per_m_chars": "15",
    "rerank_usd_per_search": "0.002",
    "task_actions_usd": {"upscale": "0.05"},
}
FULL_NANO = {
    "input_nano_per_m": 1_000_000_000,
    "output_nano_per_m": 2_000_000_000,
    "cached_input_nano_per_m": 500_000_000,
    "cache_write_nano_per_m": 1_250_000_000,
    "per_call_nano": 1_000_000,
    "units": {
        "images": {"1024x1024/hd": 80_000_000, "512x512": 18_000_000},
        "audio_second": 100_000,
        "speech_per_m_chars": 15_000_000_000,
        "rerank_search": 2_000_000,
        "task_actions": {"upscale": 50_000_000},
    },
}


def _model() -> str:
    return "house-" + secrets.token_hex(4)


def _channel_id(gateway: Gateway, name: str) -> int:
    channels = gateway.admin("GET", "/admin/channels").json()["data"]
    return int(next(c["id"] for c in channels if c["name"] == name))


def _effective(gateway: Gateway, model: str, query: str = "") -> dict[str, Any]:
    response = gateway.admin("GET", f"/admin/prices/{model}{query}")
    return dict(response.json()) if response.status_code == 200 else {}


def test_set_a_price_with_every_unit_for_every_channel(gateway: Gateway) -> None:
    model = _model()
    response = gateway.admin("PUT", f"/admin/prices/{model}", FULL_PRICE)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": model,
        "channel_id": 0,
        **FULL_NANO,
        "usd": {
            "input_per_m": 1.0,
            "output_per_m": 2.0,
            "cached_input_per_m": 0.5,
            "cache_write_per_m": 1.25,
            "per_call": 0.001,
        },
    }
    listed = gateway.admin("GET", "/admin/prices").json()["data"]
    assert [row for row in listed if row["model"] == model] == [response.json()]

    effective = _effective(gateway, model, "?group=default")
    assert effective["source"] == "every channel"
    assert effective["multiplier_ppm"] == 1_000_000
    assert effective["units"] == FULL_NANO["units"]

    assert gateway.admin("DELETE", f"/admin/prices/{model}").status_code == 200
    missing = gateway.admin("DELETE", f"/admin/prices/{model}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert gateway.admin("GET", f"/admin/prices/{model}").status_code == 404


def test_a_channel_price_and_a_group_multiplier_apply_at_once(gateway: Gateway) -> None:
    model, group = _model(), "g-" + secrets.token_hex(4)
    main = _channel_id(gateway, "openai-main")
    everywhere = {"input_usd_per_m": "3", "output_usd_per_m": "4"}
    assert gateway.admin("PUT", f"/admin/prices/{model}", everywhere).status_code == 200
    scoped = {"input_usd_per_m": "1", "output_usd_per_m": "2"}
    response = gateway.admin("PUT", f"/admin/prices/{model}?channel=openai-main", scoped)
    assert response.status_code == 200, response.text
    assert response.json()["channel_id"] == main
    multiplier = gateway.admin("PUT", f"/admin/groups/{group}/multiplier", {"multiplier": 0.85})
    assert multiplier.json() == {"group": group, "multiplier": 0.85, "multiplier_ppm": 850_000}

    on_main = _effective(gateway, model, f"?channel_id={main}&group={group}")
    assert (on_main["source"], on_main["input_nano_per_m"]) == ("channel", 1_000_000_000)
    assert on_main["multiplier_ppm"] == 850_000
    elsewhere = _effective(gateway, model, f"?channel_id={main + 1000}")
    assert (elsewhere["source"], elsewhere["input_nano_per_m"]) == ("every channel", 3 * 10**9)
    assert elsewhere["multiplier_ppm"] == 1_000_000  # the default group
    groups = gateway.admin("GET", "/admin/groups").json()["data"]
    assert {"group": group, "multiplier": 0.85, "multiplier_ppm": 850_000} in groups

    assert gateway.admin("DELETE", f"/admin/groups/{group}/multiplier").status_code == 200
    assert gateway.admin("DELETE", f"/admin/groups/{group}/multiplier").status_code == 404
    assert _effective(gateway, model, f"?group={group}")["multiplier_ppm"] == 1_000_000
    gone = gateway.admin("DELETE", f"/admin/prices/{model}?channel_id={main}")
    assert gone.status_code == 200
    assert _effective(gateway, model, f"?channel_id={main}")["source"] == "every channel"
    gateway.admin("DELETE", f"/admin/prices/{model}")


def test_the_catalogue_is_listed_with_its_units(gateway: Gateway) -> None:
    rows = gateway.admin("GET", "/admin/prices?catalogue=1").json()["data"]
    dalle = next(row for row in rows if row["model"] == "dall-e-3")
    assert dalle["units"]["images"]["1024x1024/hd"] == 80_000_000
    whisper = _effective(gateway, "whisper-1")
    assert (whisper["source"], whisper["units"]) == ("catalogue", {"audio_second": 100_000})


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/admin/prices/m", {"input_usd_per_m": "-1", "output_usd_per_m": "1"}, 400,
         "input_usd_per_m"),
        ("/admin/prices/m", {"input_usd_per_m": "0.0000000001", "output_usd_per_m": "1"}, 400,
         "input_usd_per_m"),
        ("/admin/prices/m", {"input_usd_per_m": "1"}, 400, "output_usd_per_m"),
        ("/admin/prices/m", {**FULL_PRICE, "colour": "red"}, 400, "colour"),
        ("/admin/prices/m", {**FULL_PRICE, "images_usd": {"a b": "1"}}, 400, "images_usd"),
        ("/admin/prices/m", {**FULL_PRICE, "per_call_usd": "2000000"}, 400, "per_call_usd"),
        ("/admin/prices/m?channel=no-such-channel", FULL_PRICE, 404, "channel"),
        ("/admin/prices/m?channel_id=999999", FULL_PRICE, 404, "channel_id"),
        ("/admin/prices/m?channel_id=abc", FULL_PRICE, 400, "channel_id"),
        ("/admin/prices/m?channel_id=5", {**FULL_PRICE, "channel_id": 6}, 400, "channel_id"),
        ("/admin/prices/" + "m" * 129, FULL_PRICE, 400, "model"),
        ("/admin/groups/vip/multiplier", {"multiplier": 0}, 400, "multiplier"),
        ("/admin/groups/vip/multiplier", {"multiplier": "0.1234567"}, 400, "multiplier"),
        ("/admin/groups/vip/multiplier", {}, 400, "multiplier"),
    ],
)  # fmt: skip
def test_bad_price_input_is_refused_with_the_field_named(
    gateway: Gateway, path: str, body: dict[str, Any], status: int, param: str
) -> None:
    response = gateway.admin("PUT", path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_price_admin_needs_the_admin_key(gateway: Gateway, api_key: str) -> None:
    for method, path in (("GET", "/admin/prices"), ("PUT", "/admin/groups/g/multiplier")):
        response = httpx.request(
            method, gateway.url + path, headers={"Authorization": f"Bearer {api_key}"}, json={}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_cli_prices_and_multipliers_reach_the_running_gateway(gateway: Gateway) -> None:
    model, group = _model(), "cli-" + secrets.token_hex(4)
    main = _channel_id(gateway, "openai-main")
    gateway.cli(
        "price", "set", model, "--input", "1", "--output", "2", "--cached-input", "0.5",
        "--cache-write", "1.25", "--per-call", "0.001", "--image", "1024x1024/hd=0.08",
        "--image", "512x512=0.018", "--audio-second", "0.0001", "--speech-1m-chars", "15",
        "--rerank-search", "0.002", "--task-action", "upscale=0.05", "--channel", "openai-main",
    )  # fmt: skip

    def arrived() -> bool:
        found = _effective(gateway, model, f"?channel_id={main}")
        return found.get("source") == "channel"

    wait_until(arrived, timeout=1.0)
    effective = _effective(gateway, model, f"?channel_id={main}")
    assert {name: effective[name] for name in FULL_NANO} == FULL_NANO
    listed = gateway.cli("price", "list").stdout
    assert model in listed and "1.000000" in listed and "0.001000" in listed

    in_group = f"?channel_id={main}&group={group}"
    gateway.cli("group", "multiplier", group, "0.85")
    wait_until(lambda: _effective(gateway, model, in_group).get("multiplier") == 0.85)
    assert gateway.cli("group", "multiplier", group).stdout.strip() == f"group '{group}': 0.85"
    assert group in gateway.cli("group", "list").stdout
    gateway.cli("group", "multiplier", group, "--remove")
    wait_until(lambda: _effective(gateway, model, in_group).get("multiplier") == 1.0)

    gateway.cli("price", "remove", model, "--channel", "openai-main")
    wait_until(lambda: not _effective(gateway, model, f"?channel_id={main}"), timeout=1.0)
    assert "dall-e-3" in gateway.cli("price", "list", "--catalogue").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--input", "-1", "--output", "1"), "input_usd_per_m"),
        (("--input", "abc", "--output", "1"), "input_usd_per_m"),
        (("--input", "1", "--output", "1", "--channel", "nope"), "No channel is named 'nope'"),
        (("--input", "1", "--output", "1", "--image", "1024x1024"), "--image takes NAME=USD"),
    ],
)
def test_cli_refuses_bad_prices(gateway: Gateway, args: tuple[str, ...], message: str) -> None:
    result = gateway.cli("price", "set", "m", *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_cli_sets_a_markup_multiplier(gateway: Gateway) -> None:
    group = "markup-" + secrets.token_hex(4)
    out = gateway.cli("group", "multiplier", group, "1.5").stdout
    assert out.strip() == f"group '{group}' pays 1.5 x list price"
    rows = gateway.admin("GET", "/admin/groups").json()["data"]
    assert {"group": group, "multiplier": 1.5, "multiplier_ppm": 1_500_000} in rows
    gateway.cli("group", "multiplier", group, "--remove")
