"""Money under concurrency: holds, settlement, limits and budgets, on both counter backends."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.constants import REDIS_URL, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.metering import MAX_TOKENS, NANO_PER_OUTPUT_TOKEN, OUTPUT_USD_PER_M, metered_body


def metering_env(backend: str) -> dict[str, str]:
    env = {"OMNIRELAY_HOLD_LEASE_S": "2"}
    if backend == "redis":
        env["OMNIRELAY_REDIS_URL"] = REDIS_URL
        env["OMNIRELAY_REDIS_PREFIX"] = "test-" + secrets.token_hex(6)
    return env


@pytest.fixture(scope="module", params=["memory", "redis"])
def metered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI
) -> Iterator[Gateway]:
    server = Gateway(tmp_path_factory.mktemp(f"metering-{request.param}"),
                     env=metering_env(request.param))  # fmt: skip
    server.start()
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o", "gpt-4o-mini"])  # fmt: skip
    server.cli("price", "set", "gpt-4o-mini", "--input", "0", "--output", OUTPUT_USD_PER_M)
    wait_until(lambda: _call(server, server.create_key(name="warm")["key"]).status_code == 200)
    yield server
    server.stop()


def _call(server: Gateway, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(server.base_url + "/chat/completions", json=metered_body(**extra),
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip


async def _burst(server: Gateway, key: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [
            client.post(
                server.base_url + "/chat/completions",
                json=metered_body(),
                headers={"Authorization": f"Bearer {key}"},
            )
            for _ in range(count)
        ]
        return list(await asyncio.gather(*calls))


def _ledger_balances(server: Gateway, key_id: int) -> tuple[int, int]:
    """The key's spend as stored, and the sum of its logged charges."""
    logs = server.admin("GET", f"/admin/logs?key_id={key_id}&limit=1000").json()["data"]
    used = server.admin("GET", f"/admin/keys/{key_id}").json()["used_nano"]
    return int(used), sum(row["cost_nano"] for row in logs)


def test_exactly_ten_of_two_hundred_concurrent_calls_succeed(metered: Gateway) -> None:
    cost = MAX_TOKENS * NANO_PER_OUTPUT_TOKEN  # the hold equals the cost: input is free
    created = metered.create_key(name="ten", quota_usd=str(10 * cost / 1e9))
    responses = asyncio.run(_burst(metered, created["key"], 200))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, statuses
    refused = [r for r in responses if r.status_code != 200]
    assert all(r.status_code == 429 for r in refused)
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    used, logged = _ledger_balances(metered, created["id"])
    assert used == logged == 10 * cost
    # The quota is spent to the unit: the next call is refused too.
    assert _call(metered, created["key"]).status_code == 429


def test_a_failed_call_releases_its_hold(metered: Gateway, fake: FakeOpenAI) -> None:
    cost = MAX_TOKENS * NANO_PER_OUTPUT_TOKEN
    created = metered.create_key(name="one", quota_usd=str(cost / 1e9))
    fake.fail_next(500)
    assert _call(metered, created["key"]).status_code == 502
    assert _call(metered, created["key"]).status_code == 200
    assert _ledger_balances(metered, created["id"]) == (cost, cost)


def test_requests_per_minute(metered: Gateway) -> None:
    key = metered.create_key(name="rpm", limits={"rpm": 3})["key"]
    assert [_call(metered, key).status_code for _ in range(3)] == [200] * 3
    refused = _call(metered, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61


def test_tokens_per_minute(metered: Gateway) -> None:
    key = metered.create_key(name="tpm", limits={"tpm": 40})["key"]
    first = _call(metered, key)
    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] >= 40
    refused = _call(metered, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "tokens")


def test_calls_in_flight(metered: Gateway, fake: FakeOpenAI) -> None:
    key = metered.create_key(name="conc", limits={"max_concurrency": 1})["key"]
    fake.stall_after = 1
    with httpx.stream("POST", metered.base_url + "/chat/completions",
                      json=metered_body(stream=True), headers={"Authorization": f"Bearer {key}"},
                      timeout=10) as held:  # fmt: skip
        assert held.status_code == 200
        refused = _call(metered, key)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert "Retry-After" in refused.headers
    fake.stall_after = None
    wait_until(lambda: _call(metered, key).status_code == 200, timeout=3)


def test_budget_per_period(metered: Gateway) -> None:
    cost = MAX_TOKENS * NANO_PER_OUTPUT_TOKEN
    limits = {"budget_usd": str(2 * cost / 1e9), "budget_period": "day"}
    key = metered.create_key(name="daily", limits=limits)["key"]
    assert [_call(metered, key).status_code for _ in range(2)] == [200, 200]
    refused = _call(metered, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "period" in refused.json()["error"]["message"]


def test_ip_allowlist(metered: Gateway) -> None:
    elsewhere = metered.create_key(name="ip-no", limits={"allowed_ips": ["10.0.0.0/8"]})
    refused = _call(metered, elsewhere["key"])
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ip_not_allowed"
    here = metered.create_key(name="ip-yes", limits={"allowed_ips": ["127.0.0.1/32"]})
    assert _call(metered, here["key"]).status_code == 200


def test_strict_settlement_is_durable_before_the_response_ends(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI
) -> None:
    import sqlite3

    workdir = tmp_path_factory.mktemp("strict")
    # A flush interval far longer than the test: only strict mode can make it durable.
    env = {"OMNIRELAY_STRICT_SETTLEMENT": "true", "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "1"}
    server = Gateway(workdir, env=env)
    server.start()
    try:
        server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"])  # fmt: skip
        key = server.create_key(name="strict")["key"]
        database = sqlite3.connect(workdir / "data" / "omnirelay.db")
        for stream in (False, True):
            response = _call(server, key, stream=stream)
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            found = database.execute(
                "SELECT amount_nano FROM ledger WHERE request_id = ?", (request_id,)
            ).fetchall()
            assert len(found) == 1 and found[0][0] > 0, f"stream={stream}: not yet durable"
            if stream:
                # Settling at [DONE] must not end the stream with an error after it.
                events = [line for line in response.text.splitlines() if line]
                assert events[-1] == "data: [DONE]", events[-3:]
                assert not any('"error"' in line for line in events)
        database.close()
    finally:
        server.stop()


def test_channel_prices_and_group_multipliers_set_the_charge(
    metered: Gateway, fake: FakeOpenAI
) -> None:
    group = "half-" + secrets.token_hex(3)
    channel = f"{group}-up"
    metered.add_channel(name=channel, base_url=fake.base_url, api_key=UPSTREAM_KEY,
                        models=["gpt-4o-mini"], group=group)  # fmt: skip
    # This channel charges twice the usual output price; the group pays a quarter of that.
    metered.cli("price", "set", "gpt-4o-mini", "--input", "0", "--output", "20",
                "--channel", channel)  # fmt: skip
    metered.cli("group", "multiplier", group, "0.25")
    created = metered.create_key(name="half", group=group)
    base = MAX_TOKENS * NANO_PER_OUTPUT_TOKEN

    def charged_as_expected() -> bool:
        assert _call(metered, created["key"]).status_code == 200
        logs = metered.admin("GET", f"/admin/logs?key_id={created['id']}").json()["data"]
        # Neither rule would give base, the channel alone 2 x base, the group alone base / 4.
        return bool(logs[0]["cost_nano"] == 2 * base // 4)

    wait_until(charged_as_expected, timeout=1.0)
    used, logged = _ledger_balances(metered, created["id"])
    assert used == logged


def test_limits_beyond_the_columns_are_refused_clearly(metered: Gateway) -> None:
    response = metered.admin("POST", "/admin/keys", {"name": "huge", "limits": {"tpm": 10**12}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limits.tpm"
