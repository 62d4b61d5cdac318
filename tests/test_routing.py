"""Failover, breakers, cooldowns, timeouts and disconnects, against fault-injecting fakes."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, free_port, wait_until

BREAKER_COOLDOWN_S = 1.0


@pytest.fixture(scope="module")
def fakes() -> Iterator[list[FakeOpenAI]]:
    started = [FakeOpenAI(api_key=UPSTREAM_KEY) for _ in range(3)]
    for fake in started:
        fake.start()
    yield started
    for fake in started:
        fake.stop()


@pytest.fixture(autouse=True)
def _reset(fakes: list[FakeOpenAI]) -> None:
    for fake in fakes:
        fake.reset()


@pytest.fixture(scope="module")
def router_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("routing"),
        env={
            "OMNIRELAY_MAX_ATTEMPTS": "5",
            "OMNIRELAY_BREAKER_FAILURES": "2",
            "OMNIRELAY_BREAKER_WINDOW": "4",
            "OMNIRELAY_BREAKER_COOLDOWN_S": str(BREAKER_COOLDOWN_S),
            "OMNIRELAY_MAX_RETRY_WAIT_S": "2",
        },
    )
    server.start()
    yield server
    server.stop()


class Group:
    """Channels of one group of their own, and a key of that group."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.name = "g-" + secrets.token_hex(4)
        self.key = gateway.create_key(name=self.name, group=self.name)
        self.channels: list[dict[str, Any]] = []

    def add(self, base_url: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("models", ["gpt-4o"])
        channel = self.gateway.add_channel(
            name=f"{self.name}-{len(self.channels)}",
            base_url=base_url,
            api_key=UPSTREAM_KEY,
            group=self.name,
            **fields,
        )
        self.channels.append(channel)
        return channel

    def call(self, stream: bool = False) -> httpx.Response:
        return httpx.post(
            self.gateway.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {self.key['key']}"},
            json={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hello there"}],
                "stream": stream,
            },
            timeout=30,
        )

    def last_log(self) -> dict[str, Any]:
        rows = self.gateway.admin("GET", f"/admin/logs?key_id={self.key['id']}").json()["data"]
        return dict(rows[0])

    def channel(self, index: int) -> dict[str, Any]:
        found = self.gateway.admin("GET", f"/admin/channels/{self.channels[index]['id']}")
        return dict(found.json())


@pytest.fixture
def group(router_gateway: Gateway) -> Group:
    return Group(router_gateway)


def chat_requests(fake: FakeOpenAI) -> int:
    return sum(1 for r in fake.received if r.path == "/v1/chat/completions")


def test_a_500_moves_on_to_the_next_tier(group: Group, fakes: list[FakeOpenAI]) -> None:
    first = group.add(fakes[0].base_url, priority=10)
    second = group.add(fakes[1].base_url, priority=0)
    fakes[0].fail_next(500)
    response = group.call()
    assert response.status_code == 200, response.text
    row = group.last_log()
    assert [(a["channel_id"], a["status"]) for a in row["attempts"]] == [
        (first["id"], 502),
        (second["id"], 200),
    ]
    assert row["channel_id"] == second["id"]


def test_a_429_cools_the_channel_down_for_everyone(group: Group, fakes: list[FakeOpenAI]) -> None:
    group.add(fakes[0].base_url, priority=10)
    group.add(fakes[1].base_url, priority=0)
    fakes[0].fail_next(429, headers={"Retry-After": "30"})
    assert group.call().status_code == 200
    assert chat_requests(fakes[0]) == 1
    for _ in range(3):
        assert group.call().status_code == 200
    assert chat_requests(fakes[0]) == 1, "a cooling channel was tried again"
    assert group.channel(0)["live"]["cooldown_s"] > 25


def test_a_timeout_before_the_first_byte_moves_on(group: Group, fakes: list[FakeOpenAI]) -> None:
    group.add(fakes[0].base_url, priority=10, timeouts={"first_byte_s": 0.3})
    group.add(fakes[1].base_url, priority=0)
    fakes[0].answer_delay = 2.0
    started = time.monotonic()
    for stream in (False, True):
        response = group.call(stream=stream)
        assert response.status_code == 200, response.text
    assert time.monotonic() - started < 1.8
    assert [a["status"] for a in group.last_log()["attempts"]] == [504, 200]


def test_connection_refused_moves_on(group: Group, fakes: list[FakeOpenAI]) -> None:
    group.add(f"http://127.0.0.1:{free_port()}/v1", priority=10)
    group.add(fakes[1].base_url, priority=0)
    assert group.call().status_code == 200
    assert [a["status"] for a in group.last_log()["attempts"]] == [502, 200]


def test_all_channels_refused_is_a_502_naming_no_address(group: Group) -> None:
    ports = [free_port(), free_port()]
    for port in ports:
        group.add(f"http://127.0.0.1:{port}/v1")
    response = group.call()
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "All 2 attempts failed" in error["message"]
    assert "127.0.0.1" not in error["message"] and UPSTREAM_KEY not in error["message"]
    assert all(str(port) not in error["message"] for port in ports)


def test_a_tried_channel_is_never_picked_again(group: Group, fakes: list[FakeOpenAI]) -> None:
    for fake in fakes:
        group.add(fake.base_url)
        fake.fail_next(500)
    response = group.call()
    assert response.status_code == 502
    assert [chat_requests(fake) for fake in fakes] == [1, 1, 1]
    channels = [a["channel_id"] for a in group.last_log()["attempts"]]
    assert sorted(channels) == sorted(c["id"] for c in group.channels)


def test_breaker_opens_after_failures_and_closes_after_a_passing_probe(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(fakes[0].base_url)
    fakes[0].fail_next(500, times=2)
    assert group.call().status_code == 502
    assert group.channel(0)["live"]["breaker"] == "closed", "one error must not open it"
    assert group.call().status_code == 502
    assert group.channel(0)["live"]["breaker"] == "open"
    refused = group.call()
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "upstream_unavailable"
    assert 1 <= int(refused.headers["Retry-After"]) <= BREAKER_COOLDOWN_S + 1
    assert chat_requests(fakes[0]) == 2, "an open breaker let a call through"
    # The cooldown runs out: the breaker lets one probe call through.
    wait_until(
        lambda: group.channel(0)["live"]["breaker"] == "half_open", timeout=BREAKER_COOLDOWN_S + 2
    )
    assert group.call().status_code == 200  # the probe passes
    assert group.channel(0)["live"]["breaker"] == "closed"
    assert group.call().status_code == 200


def test_every_channel_at_capacity_is_a_503_with_retry_after(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(fakes[0].base_url, max_inflight=1)
    fakes[0].stall_after = 1
    with httpx.stream(
        "POST",
        group.gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {group.key['key']}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        timeout=10,
    ) as held:
        assert held.status_code == 200
        wait_until(lambda: group.channel(0)["live"]["inflight"] == 1, timeout=2)
        refused = group.call()
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "upstream_unavailable"
        assert "Retry-After" in refused.headers


def test_client_disconnect_cancels_a_silent_upstream_at_once(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    fake = fakes[2]
    group.add(fake.base_url)
    # First a stream whose usage the gateway counts itself: loading the token encodings
    # on first use blocks its loop for a while, which must not be timed below when this
    # test runs on its own.
    fake.omit_stream_usage = True
    assert group.call(stream=True).status_code == 200
    fake.omit_stream_usage = False
    fake.stall_after = 2
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "a b c d e f"}],
            "stream": True}  # fmt: skip
    conn = socket.create_connection(("127.0.0.1", group.gateway.port), timeout=10)
    payload = httpx.Request(
        "POST",
        group.gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {group.key['key']}", "Host": "127.0.0.1"},
        json=body,
    )
    head = "POST /v1/chat/completions HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in payload.headers.items()
    )
    conn.sendall(head.encode() + b"\r\n" + payload.read())
    received = b""
    while received.count(b"data: ") < 2:
        chunk = conn.recv(65536)
        assert chunk, f"the gateway closed the stream early: {received!r}"
        received += chunk
    wait_until(lambda: fake.stalls == 1, timeout=2)  # the fake is silent now
    closed_at = time.monotonic()
    conn.close()

    def ends() -> list[tuple[float, str]]:
        return [end for end in fake.stream_ends if end[0] >= closed_at]

    wait_until(lambda: bool(ends()), timeout=2)
    ended_at, how = ends()[0]
    assert how == "gone"
    assert ended_at - closed_at < 0.1, f"upstream cancelled after {ended_at - closed_at:.3f}s"
    wait_until(lambda: group.last_log()["status"] == 499, timeout=3)
    row = group.last_log()
    assert "cancelled" in row["error"]
    assert row["completion_tokens"] > 0 and row["cost_nano"] > 0


def test_auth_failure_disables_the_channel_and_a_probe_restores_it(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(fakes[0].base_url, priority=10)
    group.add(fakes[1].base_url, priority=0)
    fakes[0].fail_next(401)
    assert group.call().status_code == 200  # the second channel answered
    wait_until(lambda: group.channel(0)["enabled"] is False, timeout=2)
    disabled = group.channel(0)
    assert disabled["disabled_by"] == "health"
    assert "credentials" in disabled["disabled_reason"]
    gateway = group.gateway
    assert group.call().status_code == 200
    assert chat_requests(fakes[0]) == 1, "a disabled channel was tried"
    result = gateway.cli("channel", "test", disabled["name"])
    assert "re-enabled" in result.stdout
    wait_until(lambda: group.channel(0)["enabled"] is True, timeout=1)
    assert group.channel(0)["last_probe"]["ok"] is True


def test_a_manual_disable_survives_probes(group: Group, fakes: list[FakeOpenAI]) -> None:
    channel = group.add(fakes[0].base_url)
    gateway = group.gateway
    gateway.admin("PATCH", f"/admin/channels/{channel['id']}", {"enabled": False})
    probe = gateway.admin("POST", f"/admin/channels/{channel['id']}/test").json()
    assert probe["ok"] is True and probe["reenabled"] is False
    after = group.channel(0)
    assert after["enabled"] is False and after["disabled_by"] == "operator"
    assert group.call().status_code == 404


def test_channel_status_shows_live_state(group: Group, fakes: list[FakeOpenAI]) -> None:
    group.add(fakes[0].base_url)
    assert group.call().status_code == 200
    status = group.gateway.cli("channel", "status")
    name = group.channels[0]["name"]
    line = next(row for row in status.stdout.splitlines() if name in row)
    assert "closed" in line


def test_a_short_retry_after_is_waited_out_when_no_channel_is_left(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(fakes[0].base_url)
    fakes[0].fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert group.call().status_code == 200
    assert 0.9 < time.monotonic() - started < 2.5
    assert chat_requests(fakes[0]) == 2
    assert [a["status"] for a in group.last_log()["attempts"]] == [503, 200]


def test_a_retry_after_beyond_the_wait_limit_is_not_waited(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(fakes[0].base_url)
    fakes[0].fail_next(429, headers={"Retry-After": "20"})
    response = group.call()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "20"
    assert chat_requests(fakes[0]) == 1


@pytest.mark.parametrize("trial", range(5))
def test_weights_hold_within_five_points_unseeded(trial: int) -> None:
    from omnirelay.gateway.routing import Router
    from omnirelay.providers.http import Timeouts
    from omnirelay.store.channels import ChannelRow

    def channel(channel_id: int, weight: int, priority: int = 0) -> ChannelRow:
        return ChannelRow(
            id=channel_id, name=f"c{channel_id}", type="openai", base_url="http://x/v1",
            api_key="k", models=("m",), model_mapping={}, group_name="default",
            priority=priority, weight=weight, enabled=True, disabled_reason=None,
            options={}, created_at=0, updated_at=0,
        )  # fmt: skip

    router = Router(Timeouts(1, 1, 1, 1))  # unseeded: no lucky seed to depend on
    router.replace([channel(1, 6), channel(2, 3), channel(3, 1), channel(4, 9, priority=-1)])
    candidates = router.candidates("default", "m")
    picks = [router.pick(candidates, (), lambda _r: True) for _ in range(2000)]
    shares = {cid: sum(1 for p in picks if p and p.channel_id == cid) / 2000 for cid in (1, 2, 3)}
    assert abs(shares[1] - 0.6) <= 0.05 and abs(shares[2] - 0.3) <= 0.05
    assert abs(shares[3] - 0.1) <= 0.05
    # The lower tier is used only once the top tier is exhausted.
    assert all(p and p.channel_id != 4 for p in picks)
    last = router.pick(candidates, {1, 2, 3}, lambda _r: True)
    assert last is not None and last.channel_id == 4


def test_mapping_overrides_and_headers_reach_the_upstream(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(
        fakes[0].base_url,
        model_mapping={"gpt-4o": "gpt-4o-mini"},
        body_overrides={"temperature": 0.1},
        headers={"OpenAI-Organization": "org-team"},
    )
    response = group.call()
    assert response.status_code == 200
    sent = fakes[0].received[-1]
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["temperature"] == 0.1
    assert sent.headers["openai-organization"] == "org-team"
    assert group.last_log()["model"] == "gpt-4o"


def test_a_stream_silent_past_its_idle_timeout_ends_with_an_error_event(
    group: Group, fakes: list[FakeOpenAI]
) -> None:
    group.add(fakes[0].base_url, timeouts={"idle_s": 0.5})
    fakes[0].stall_after = 3
    response = group.call(stream=True)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert "silent" in events[-1] and '"code":"upstream_timeout"' in events[-1]
    row = group.last_log()
    assert row["status"] == 504 and row["cost_nano"] > 0


def test_health_disabled_channels_are_probed_back_periodically(
    tmp_path_factory: pytest.TempPathFactory, fakes: list[FakeOpenAI]
) -> None:
    server = Gateway(tmp_path_factory.mktemp("probing"), env={"OMNIRELAY_PROBE_INTERVAL_S": "0.3"})
    server.start()
    try:
        local = Group(server)
        local.add(fakes[0].base_url, priority=10)
        local.add(fakes[1].base_url)
        fakes[0].fail_next(401)
        assert local.call().status_code == 200
        # Only a channel that health disabled is probed; the probe brings it back.

        def probed_back() -> bool:
            channel = local.channel(0)
            return bool(channel["last_probe"] and channel["enabled"])

        wait_until(probed_back, timeout=3)
        assert local.channel(0)["last_probe"]["ok"] is True
        assert local.channel(1)["last_probe"] is None, "a healthy channel was probed"
        pings = [r for r in fakes[0].received if r.body and r.body.get("max_tokens") == 1]
        assert pings, "no probe call reached the upstream"
    finally:
        server.stop()
