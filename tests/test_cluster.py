"""Three gateway nodes on PostgreSQL and Redis, behind a round-robin client, failing.

Three separate ``omnirelay serve`` processes (not workers of one) share one database and
one Redis, as nodes behind a load balancer do. The test is the load balancer: a client
that sends each call to the next live node, at no more than 50 calls a second (the nodes
share two cores with the database), and skips a node that refuses connections.

- A channel starts failing: once the first node opens its breaker (seen on Redis), within
  a second the other nodes send it nothing but the half-open probe, one among all.
- One node is killed (SIGKILL) mid-load: calls to the others keep succeeding, the killed
  node's holds are settled by the others, and the ledger balances.
- One node gets SIGTERM with 10 streams running: all 10 finish, nothing is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from support.constants import REDIS_URL, SHARED_FERNET_KEY, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.postgres import fresh_database

NODES = 3
RATE = 25  # calls a second, over all nodes
MODEL = "gpt-4o-mini"
COOLDOWN_S = 2.0
pytestmark = pytest.mark.postgres


@dataclass
class Cluster:
    nodes: list[Gateway]
    database_url: str
    prefix: str
    flaky: dict[str, Any] = field(default_factory=dict)
    steady: dict[str, Any] = field(default_factory=dict)

    def sql(self, query: str, *args: Any) -> list[Any]:
        async def run() -> list[Any]:
            dsn = self.database_url.replace("postgresql+asyncpg", "postgresql")
            connection = await asyncpg.connect(dsn)
            try:
                return list(await connection.fetch(query, *args))
            finally:
                await connection.close()

        return asyncio.run(run())


@pytest.fixture
def flaky_upstream() -> Iterator[FakeOpenAI]:
    upstream = FakeOpenAI(api_key=UPSTREAM_KEY)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def cluster(
    tmp_path: Path, fake: FakeOpenAI, flaky_upstream: FakeOpenAI, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    extra: dict[str, str] = getattr(request, "param", {})
    with fresh_database() as url:
        prefix = "cluster-" + secrets.token_hex(6)
        env = {
            "OMNIRELAY_DATABASE_URL": url,
            "OMNIRELAY_SECRET_KEY": SHARED_FERNET_KEY,
            "OMNIRELAY_REDIS_URL": REDIS_URL,
            "OMNIRELAY_REDIS_PREFIX": prefix,
            "OMNIRELAY_HOLD_LEASE_S": "2",
            "OMNIRELAY_BREAKER_FAILURES": "3",
            "OMNIRELAY_BREAKER_WINDOW": "6",
            "OMNIRELAY_BREAKER_COOLDOWN_S": str(COOLDOWN_S),
            **extra,
        }
        nodes = [Gateway(tmp_path / f"node{n}", env=env) for n in range(NODES)]
        for node in nodes:
            node.workdir.mkdir()
        first = nodes[0]
        for name, upstream in (("flaky", flaky_upstream), ("steady", fake)):
            first.cli("channel", "add", "--name", name, "--base-url", upstream.base_url,
                      "--api-key", UPSTREAM_KEY, "--models", MODEL)  # fmt: skip
        first.cli("price", "set", MODEL, "--input", "1", "--output", "10")
        for node in nodes:
            node.start()
        channels = {c["name"]: c for c in first.admin("GET", "/admin/channels").json()["data"]}
        try:
            yield Cluster(nodes, url, prefix, channels["flaky"], channels["steady"])
        finally:
            for node in nodes:
                node.stop()
            redis.Redis.from_url(REDIS_URL).delete(
                *(redis.Redis.from_url(REDIS_URL).keys(prefix + ":*") or [prefix])
            )


@dataclass
class Sent:
    node: int
    status: int  # 0: the node refused the connection (the client moved on)
    request_id: str | None
    at: float
    stream: bool = False
    done: bool = False


class RoundRobin:
    """The test's load balancer: each call to the next live node; a node that refuses the
    connection is taken out, and the call goes to the next one."""

    def __init__(self, nodes: list[Gateway], key: str) -> None:
        self.nodes = nodes
        self.down: set[int] = set()
        self.key = key
        self.sent: list[Sent] = []
        self._next = 0

    def _pick(self, only: int | None) -> int:
        if only is not None:
            return only
        for _ in range(len(self.nodes)):
            index = self._next % len(self.nodes)
            self._next += 1
            if index not in self.down:
                return index
        raise AssertionError("no node is left")

    async def call(
        self, client: httpx.AsyncClient, *, only: int | None = None, stream: bool = False
    ) -> Sent:
        while True:
            index = self._pick(only)
            try:
                sent = await self._send(client, index, stream)
            except httpx.ConnectError:
                self.sent.append(Sent(index, 0, None, time.time()))
                self.down.add(index)
                if only is not None:
                    raise
                continue
            self.sent.append(sent)
            return sent

    async def _send(self, client: httpx.AsyncClient, index: int, stream: bool) -> Sent:
        node = self.nodes[index]
        words = 60 if stream else 4
        body = {"model": MODEL, "max_tokens": 100, "stream": stream,
                "messages": [{"role": "user", "content": " ".join(["word"] * words)}]}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.key}"}
        at = time.time()
        url = node.base_url + "/chat/completions"
        async with client.stream("POST", url, json=body, headers=headers) as response:
            lines = [line async for line in response.aiter_lines()]
        done = "data: [DONE]" in lines if stream else response.status_code == 200
        return Sent(index, response.status_code, response.headers.get("x-request-id"), at,
                    stream, done)  # fmt: skip

    async def load(self, seconds: float, *, only: int | None = None) -> None:
        """Calls at RATE a second for ``seconds``, each awaited in a task of its own."""
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as c:
            tasks = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                tasks.append(asyncio.create_task(self.call(c, only=only)))
                await asyncio.sleep(1 / RATE)
            await asyncio.gather(*tasks)


class Events:
    """The breaker events the nodes publish on Redis, heard by the test as they happen."""

    def __init__(self, prefix: str) -> None:
        self._pubsub = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(f"{prefix}:health:events")
        self.heard: list[tuple[float, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None:
                data = json.loads(message["data"])
                for event in data["events"]:
                    self.heard.append((time.time(), data["node"], event))

    def first_open(self, channel_id: int) -> float | None:
        for at, _node, event in self.heard:
            if event["kind"] == "open" and event["channel"] == channel_id:
                return at
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


def _new_key(cluster: Cluster, name: str) -> dict[str, Any]:
    """A key, once every node knows it (within a second, through the change feed)."""
    key = cluster.nodes[0].create_key(name=name)
    headers = {"Authorization": f"Bearer {key['key']}"}
    for node in cluster.nodes:
        wait_until(
            lambda n=node: httpx.get(n.base_url + "/models", headers=headers).status_code == 200,
            timeout=2.0,
        )
    return key


def _attempted(cluster: Cluster, channel_id: int, since_ms: int) -> list[dict[str, Any]]:
    """Calls started at or after ``since_ms`` that tried the channel, from every node."""
    rows = cluster.sql(
        "SELECT request_id, created_ms, attempts FROM request_logs WHERE created_ms >= $1",
        since_ms,
    )
    tried = []
    for row in rows:
        attempts = json.loads(row["attempts"]) if row["attempts"] else []
        if any(attempt["channel_id"] == channel_id for attempt in attempts):
            tried.append(dict(row))
    return tried


def _flush_all(cluster: Cluster, key_id: int) -> dict[str, Any]:
    book: dict[str, Any] = {}
    for node in cluster.nodes:
        if node.process is not None:  # each live node commits what it has queued
            book = node.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    return book


def test_a_breaker_opened_on_one_node_holds_on_all_within_a_second(
    cluster: Cluster, flaky_upstream: FakeOpenAI
) -> None:
    key = _new_key(cluster, "breaker")
    flaky = int(cluster.flaky["id"])
    flaky_upstream.fail_next(500, times=100_000)
    events = Events(cluster.prefix)
    balancer = RoundRobin(cluster.nodes, key["key"])
    try:
        # Node 0 alone meets the failures until its breaker opens; the others have seen
        # none, so left to themselves they would go on trying the channel.
        async def until_open() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                give_up = time.monotonic() + 20
                while events.first_open(flaky) is None and time.monotonic() < give_up:
                    await balancer.call(client, only=0)
                    await asyncio.sleep(1 / RATE)

        asyncio.run(until_open())
        opened = events.first_open(flaky)
        assert opened is not None
        asyncio.run(balancer.load(2 * COOLDOWN_S + 1.5))
    finally:
        events.close()

    assert all(sent.status == 200 for sent in balancer.sent), "every call fails over"
    by_node = {n: [s for s in balancer.sent if s.node == n and s.at > opened] for n in (1, 2)}
    assert all(len(calls) >= 20 for calls in by_node.values())
    # From a second after the first opening on, the channel got only half-open probes:
    # one per cooldown among all nodes (each failed, and opened the breaker again).
    since_ms = int((opened + 1.0) * 1000)
    probes = sorted(row["created_ms"] for row in _attempted(cluster, flaky, since_ms))
    window_s = time.time() - (opened + 1.0)
    assert 1 <= len(probes) <= int(window_s / COOLDOWN_S) + 1, probes
    assert all(b - a >= COOLDOWN_S * 1000 * 0.8 for a, b in itertools.pairwise(probes))
    reopenings = [e for _, _, e in events.heard if e["kind"] == "open" and e["channel"] == flaky]
    assert len(reopenings) >= 2, "a failed probe opens the breaker again, for every node"


def test_a_killed_node_s_holds_are_settled_by_the_others(
    cluster: Cluster, fake: FakeOpenAI, flaky_upstream: FakeOpenAI
) -> None:
    key = _new_key(cluster, "killed")
    # Streams of ~6 s, killed after 3 s: their checkpoints of the first seconds are stored.
    fake.stream_delay = flaky_upstream.stream_delay = 0.1
    balancer = RoundRobin(cluster.nodes, key["key"])

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            streams = [
                asyncio.create_task(balancer.call(client, only=2, stream=True)) for _ in range(4)
            ]
            load = asyncio.create_task(balancer.load(4.0))
            await asyncio.sleep(3.0)
            cluster.nodes[2].kill()  # SIGKILL, mid-stream and mid-load
            await load
            await asyncio.gather(*streams, return_exceptions=True)  # they die with the node

    asyncio.run(scenario())

    survivors = [s for s in balancer.sent if s.node in (0, 1)]
    assert len(survivors) >= 40
    failed = [(s.status, s.request_id) for s in survivors if s.status != 200]
    assert not failed, "calls to the other nodes keep succeeding"
    assert 2 in balancer.down
    # The dead node's holds are settled by the others' reconcilers, from their checkpoints.
    wait_until(lambda: not _flush_all(cluster, key["id"])["open_holds"], timeout=20, interval=0.5)
    book = _flush_all(cluster, key["id"])
    assert book["total_nano"] == book["key_used_nano"]
    entries = {entry["request_id"]: entry for entry in book["entries"]}
    served = [s for s in survivors if s.request_id]
    assert all(s.request_id in entries for s in served), "every served call is charged"
    expired = [e for e in book["entries"] if e["kind"] == "expired"]
    assert expired, "the killed node's streams are settled from their holds"


def test_sigterm_with_ten_streams_running_loses_nothing(
    cluster: Cluster, fake: FakeOpenAI, flaky_upstream: FakeOpenAI
) -> None:
    key = _new_key(cluster, "drained")
    fake.stream_delay = flaky_upstream.stream_delay = 0.05  # streams of ~3 s
    balancer = RoundRobin(cluster.nodes, key["key"])
    streams: list[Sent] = []

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            running = [
                asyncio.create_task(balancer.call(client, only=1, stream=True)) for _ in range(10)
            ]
            await asyncio.sleep(1.0)
            cluster.nodes[1].process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            await balancer.load(3.0)  # the others take the calls; node 1 takes no new one
            streams.extend(await asyncio.gather(*running))

    asyncio.run(scenario())
    cluster.nodes[1].process.wait(30)  # type: ignore[union-attr]
    cluster.nodes[1].stop()

    assert cluster.nodes[1].returncode == 0, cluster.nodes[1].output
    assert len(streams) == 10
    assert all(s.status == 200 and s.done for s in streams), "all 10 streams finish"
    others = [s for s in balancer.sent if not s.stream and s.status != 0]
    assert others and all(s.status == 200 for s in others)
    book = _flush_all(cluster, key["id"])
    assert not book["open_holds"]
    assert book["total_nano"] == book["key_used_nano"]
    charged = {entry["request_id"]: entry for entry in book["entries"]}
    for s in streams:
        assert charged[s.request_id]["kind"] == "charge"
        assert charged[s.request_id]["amount_nano"] > 0
    rows = cluster.sql(
        "SELECT status FROM request_logs WHERE request_id = ANY($1::text[])",
        [s.request_id for s in streams],
    )
    assert [row["status"] for row in rows] == [200] * 10
