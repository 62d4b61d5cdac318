"""Operator alerts: a signed webhook, retried, SSRF-guarded, from the real gateway.

A receiver on loopback (the gateway is told it may reach private addresses) checks each
alert's HMAC signature: a channel auto-disabled (delivered on the second try after a 500,
under the same delivery id), a key past 80% of its quota or of its period's budget (once,
however often checked), a dead-letter row, and the log writer's lag past its threshold
(alerted even when a key's budget check waits on the locked database). With the default
guard, a loopback webhook is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from omnirelay.providers.guarded import FetchRefused, GuardedClient
from support import refusing
from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.fake_threaded import LoopbackServer
from support.gateway import Gateway, wait_until

SECRET = "whsec-test-6f1e0c9a"


class Receiver(LoopbackServer):
    """A webhook receiver that verifies signatures, and fails when told to."""

    name = "webhook"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.deliveries: list[dict[str, Any]] = []  # every POST, as received
        self.fail_next = 0

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp, _, mac = request.headers["X-OmniRelay-Signature"].partition(",v1=")
        sent_at = int(timestamp.removeprefix("t="))
        expected = hmac.new(SECRET.encode(), f"{sent_at}.".encode() + body, hashlib.sha256)
        with self._lock:
            self.deliveries.append(
                {
                    "alert": json.loads(body),
                    "event": request.headers["X-OmniRelay-Event"],
                    "delivery": request.headers["X-OmniRelay-Delivery"],
                    "signed": hmac.compare_digest(mac, expected.hexdigest()),
                    "fresh": abs(time.time() - sent_at) < 60,
                }
            )
            if self.fail_next:
                self.fail_next -= 1
                return web.Response(status=500)
        return web.Response(status=204)

    def of(self, kind: str, **data: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                d
                for d in self.deliveries
                if d["event"] == kind
                and all(d["alert"]["data"].get(k) == v for k, v in data.items())
            ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture(scope="module")
def alerting(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, fake: FakeOpenAI
) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("alerts"),
        env={
            "OMNIRELAY_ALERT_WEBHOOK_URL": receiver.url + "/hook",
            "OMNIRELAY_ALERT_WEBHOOK_SECRET": SECRET,
            "OMNIRELAY_ALERT_WEBHOOK_ALLOW_PRIVATE": "true",
            "OMNIRELAY_ALERT_CHECK_INTERVAL_S": "0.2",
            "OMNIRELAY_LOG_LAG_THRESHOLD_S": "1",
        },
    )
    server.start()
    server.cli("price", "set", "gpt-4o-mini", "--input", "0", "--output", "10")
    yield server
    server.stop()


def _channel(server: Gateway, fake: FakeOpenAI, name: str) -> dict[str, Any]:
    return server.add_channel(name=name, base_url=fake.base_url, api_key=UPSTREAM_KEY,
                              models=["gpt-4o-mini"], group=name)  # fmt: skip


def _chat(server: Gateway, key: str) -> httpx.Response:
    prompt = "a prompt the alerts never carry"
    body = {"model": "gpt-4o-mini", "max_tokens": 5,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    return httpx.post(server.base_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip


def _all_signed(receiver: Receiver) -> None:
    assert receiver.deliveries
    assert all(d["signed"] and d["fresh"] for d in receiver.deliveries)
    assert all("a prompt the alerts" not in json.dumps(d["alert"]) for d in receiver.deliveries)


def test_a_channel_disabled_is_alerted_and_retried(
    alerting: Gateway, receiver: Receiver, fake: FakeOpenAI
) -> None:
    channel = _channel(alerting, fake, "revoked")
    key = alerting.create_key(name="revoked", group="revoked")
    receiver.fail_next = 1
    fake.fail_next(401)
    assert _chat(alerting, key["key"]).status_code >= 400

    wait_until(lambda: len(receiver.of("channel.disabled", channel_id=channel["id"])) == 2,
               timeout=10, interval=0.1)  # fmt: skip
    first, second = receiver.of("channel.disabled", channel_id=channel["id"])
    assert first["delivery"] == second["delivery"], "a retry is the same delivery"
    assert second["alert"]["data"]["name"] == "revoked"
    assert second["alert"]["type"] == "channel.disabled"
    _all_signed(receiver)


def test_a_key_past_80_percent_of_its_quota_is_alerted_once(
    alerting: Gateway, receiver: Receiver, fake: FakeOpenAI
) -> None:
    _channel(alerting, fake, "quota")
    # Each call costs at most 5 output tokens at 10,000 nano-dollars: 50,000 of 100,000.
    key = alerting.create_key(name="quota", group="quota", quota_usd="0.0001")
    assert _chat(alerting, key["key"]).status_code == 200
    time.sleep(0.6)  # three checks at 50% or less
    assert not receiver.of("key.usage", key_id=key["id"])
    assert _chat(alerting, key["key"]).status_code == 200

    wait_until(lambda: receiver.of("key.usage", key_id=key["id"]), timeout=5, interval=0.1)
    time.sleep(0.6)
    (alert,) = receiver.of("key.usage", key_id=key["id"])
    data = alert["alert"]["data"]
    assert data["limit"] == "quota" and data["limit_nano"] == 100_000
    assert data["used_nano"] >= 80_000 and data["ratio"] == 0.8
    _all_signed(receiver)


def test_a_key_past_80_percent_of_its_period_budget_is_alerted_once(
    alerting: Gateway, receiver: Receiver, fake: FakeOpenAI
) -> None:
    _channel(alerting, fake, "budget")
    # A day's budget of 100,000 nano-dollars; each call costs at most 50,000 (as above).
    limits = {"budget_usd": "0.0001", "budget_period": "day"}
    key = alerting.create_key(name="budget", group="budget", limits=limits)
    assert _chat(alerting, key["key"]).status_code == 200
    time.sleep(0.6)  # three checks at 50% or less
    assert not receiver.of("key.usage", key_id=key["id"])
    assert _chat(alerting, key["key"]).status_code == 200

    wait_until(lambda: receiver.of("key.usage", key_id=key["id"]), timeout=5, interval=0.1)
    time.sleep(0.6)  # three checks more, still past 80%
    (alert,) = receiver.of("key.usage", key_id=key["id"])
    assert alert["event"] == alert["alert"]["type"] == "key.usage"
    data = alert["alert"]["data"]
    logs = alerting.admin("GET", f"/admin/logs?key_id={key['id']}").json()["data"]
    spent = sum(row["cost_nano"] for row in logs)
    assert 80_000 <= spent <= 100_000
    assert data == {
        "key_id": key["id"], "name": "budget", "limit": "budget",
        "period": f"day:{datetime.now(UTC).date().isoformat()}",
        "used_nano": spent, "limit_nano": 100_000, "ratio": 0.8,
    }  # fmt: skip
    _all_signed(receiver)


def _database(server: Gateway) -> sqlite3.Connection:
    return sqlite3.connect(server.workdir / "data" / "omnirelay.db", timeout=30)


def test_a_dead_letter_is_alerted(alerting: Gateway, receiver: Receiver, fake: FakeOpenAI) -> None:
    _channel(alerting, fake, "lettered")
    key = alerting.create_key(name="lettered", group="lettered")
    with closing(_database(alerting)) as database, database:
        for statement in refusing.install("sqlite", f"NEW.key_id = {key['id']}"):
            database.execute(statement)
    try:
        response = _chat(alerting, key["key"])
        assert response.status_code == 200
        wait_until(lambda: receiver.of("deadletter.created", key_id=key["id"]), timeout=10)
    finally:
        with closing(_database(alerting)) as database, database:
            for statement in refusing.remove("sqlite"):
                database.execute(statement)
    (alert,) = receiver.of("deadletter.created", key_id=key["id"])
    assert alert["alert"]["data"]["request_id"] == response.headers["x-request-id"]
    _all_signed(receiver)


def test_log_writer_lag_is_alerted_and_fails_readiness(
    alerting: Gateway, receiver: Receiver, fake: FakeOpenAI
) -> None:
    _channel(alerting, fake, "lagging")
    key = alerting.create_key(name="lagging", group="lagging")
    before = len(receiver.of("log_writer.lag"))
    # Another process holds SQLite's write lock: the writer waits, its rows age.
    with closing(sqlite3.connect(alerting.workdir / "data" / "omnirelay.db")) as blocker:
        blocker.isolation_level = None
        blocker.execute("BEGIN IMMEDIATE")
        try:
            assert _chat(alerting, key["key"]).status_code == 200  # the call does not wait
            wait_until(lambda: len(receiver.of("log_writer.lag")) > before, timeout=10)
            ready = httpx.get(alerting.url + "/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["checks"]["log_writer"].startswith("stalled")
        finally:
            blocker.execute("ROLLBACK")
    wait_until(
        lambda: httpx.get(alerting.url + "/readyz", timeout=10).status_code == 200, timeout=10
    )
    alert = receiver.of("log_writer.lag")[-1]["alert"]
    assert (
        alert["data"]["lag_s"] > alert["data"]["threshold_s"] and alert["data"]["queued_rows"] >= 1
    )
    _all_signed(receiver)


async def test_the_guard_refuses_a_private_webhook_by_default(receiver: Receiver) -> None:
    client = GuardedClient()
    await client.start()
    try:
        with pytest.raises(FetchRefused, match="private or local"):
            await client.post(receiver.url + "/hook", b"{}", {})
        with pytest.raises(FetchRefused, match="private or local"):
            await client.post(f"http://localhost:{receiver.port}/hook", b"{}", {})
    finally:
        await client.close()


def test_an_alert_url_needs_a_secret(tmp_path: Path) -> None:
    server = Gateway(tmp_path, env={"OMNIRELAY_ALERT_WEBHOOK_URL": "https://alerts.example/x"})
    result = server.cli("migrate", check=False)
    assert result.returncode == 2
    assert "alert_webhook_secret" in result.stderr
