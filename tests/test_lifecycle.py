"""Readiness and graceful shutdown, through the real gateway process.

``/readyz`` says whether the process should get calls. SIGTERM drains: no new connection
is taken, running streams finish (all of them, charged and logged), the log writer is
flushed, and the process exits 0. Past ``drain_timeout_s``, or on a second SIGTERM, what
still runs is cut: each stream ends with the gateway's error event and is charged for
what it relayed. ``serve --workers N`` drains the same way.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, known_everywhere, wait_until

WORDS = 20  # a stream of ~23 events
STREAM_DELAY_S = 0.1  # between events: a stream takes ~2.3 s


@dataclass
class StreamCall:
    """One streamed call, read in a thread of its own."""

    gateway: Gateway
    key: str
    chunks: list[str] = field(default_factory=list)
    status: int | None = None
    request_id: str | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> StreamCall:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 100,
                "messages": [{"role": "user", "content": " ".join(["word"] * WORDS)}]}  # fmt: skip
        try:
            with httpx.stream(
                "POST",
                self.gateway.base_url + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=60,
            ) as response:
                self.status = response.status_code
                self.request_id = response.headers.get("x-request-id")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.chunks.append(line[len("data: ") :])
        except BaseException as exc:  # reported by the test
            self.error = exc

    def join(self, timeout: float = 60) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive()

    @property
    def done(self) -> bool:
        return self.chunks[-1:] == ["[DONE]"]

    @property
    def error_codes(self) -> list[str]:
        codes = []
        for chunk in self.chunks:
            if chunk != "[DONE]" and "error" in (data := json.loads(chunk)):
                codes.append(data["error"]["code"])
        return codes


def _serve(workdir: Path, fake: FakeOpenAI, *, workers: int = 1, **env: str) -> Gateway:
    server = Gateway(workdir, env=env)
    server.start(workers=workers)
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o-mini"])  # fmt: skip
    server.cli("price", "set", "gpt-4o-mini", "--input", "0", "--output", "10")
    return server


def _rows(server: Gateway) -> dict[str, tuple[int, int]]:
    """Every logged call's (status, cost), by request id, from the stopped gateway's file."""
    with closing(sqlite3.connect(server.workdir / "data" / "omnirelay.db")) as database:
        rows = database.execute("SELECT request_id, status, cost_nano FROM request_logs")
        return {request_id: (status, cost) for request_id, status, cost in rows}


def _ledger_balances(server: Gateway, key_id: int) -> int:
    with closing(sqlite3.connect(server.workdir / "data" / "omnirelay.db")) as database:
        (total,) = database.execute(
            "SELECT COALESCE(SUM(amount_nano), 0) FROM ledger WHERE key_id = ?", (key_id,)
        ).fetchone()
        (used,) = database.execute("SELECT used_nano FROM keys WHERE id = ?", (key_id,)).fetchone()
        (holds,) = database.execute("SELECT COUNT(*) FROM holds").fetchone()
    assert total == used, (total, used)
    assert holds == 0
    return int(total)


def _start_streams(server: Gateway, key: str, count: int) -> list[StreamCall]:
    calls = [StreamCall(server, key).start() for _ in range(count)]
    wait_until(lambda: all(len(c.chunks) >= 2 for c in calls), timeout=10)
    return calls


def test_readyz_reports_each_check(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + "/readyz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"draining": "ok", "database": "ok", "log_writer": "ok"},
    }


@pytest.fixture
def slow_streams(fake: FakeOpenAI) -> FakeOpenAI:
    fake.stream_delay = STREAM_DELAY_S
    return fake


def test_sigterm_lets_running_streams_finish_then_exits_0(
    tmp_path: Path, slow_streams: FakeOpenAI
) -> None:
    server = _serve(tmp_path, slow_streams)
    key = server.create_key(name="drain")
    calls = _start_streams(server, key["key"], 5)

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    # New connections are refused at once.
    wait_until(lambda: _refused(server), timeout=2)
    for call in calls:
        call.join()
    server.process.wait(30)  # type: ignore[union-attr]
    server.stop()

    assert server.returncode == 0, server.output
    assert time.monotonic() - started < 15
    assert all(call.status == 200 and call.done and not call.error_codes for call in calls)
    rows = _rows(server)
    assert all(rows[call.request_id or ""][0] == 200 for call in calls)
    assert all(rows[call.request_id or ""][1] > 0 for call in calls)
    assert _ledger_balances(server, key["id"]) == sum(rows[c.request_id or ""][1] for c in calls)


def test_idle_keep_alive_connections_do_not_hold_the_drain(
    tmp_path: Path, slow_streams: FakeOpenAI
) -> None:
    server = _serve(tmp_path, slow_streams, OMNIRELAY_DRAIN_TIMEOUT_S="60")
    key = server.create_key(name="idle")
    headers = {"Authorization": f"Bearer {key['key']}"}
    idle = [httpx.Client(timeout=10) for _ in range(3)]  # each keeps its connection open
    try:
        for client in idle:
            assert client.get(server.base_url + "/models", headers=headers).status_code == 200
        calls = _start_streams(server, key["key"], 1)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        calls[0].join()
        server.process.wait(30)  # type: ignore[union-attr]
        took = time.monotonic() - started
    finally:
        for client in idle:
            client.close()
    server.stop()

    assert server.returncode == 0, server.output
    # The stream took its ~2.3 s; the idle connections were closed, not waited for.
    assert calls[0].done and took < 15, took


def _refused(server: Gateway) -> bool:
    try:
        httpx.get(server.url + "/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.parametrize("how", ["timeout", "second signal"])
def test_what_outlives_the_drain_is_cut_and_charged_for_what_was_relayed(
    tmp_path: Path, slow_streams: FakeOpenAI, how: str
) -> None:
    timeout = "0.5" if how == "timeout" else "60"
    server = _serve(tmp_path, slow_streams, OMNIRELAY_DRAIN_TIMEOUT_S=timeout)
    key = server.create_key(name="cut")
    calls = _start_streams(server, key["key"], 3)

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    if how == "second signal":
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for call in calls:
        call.join()
    server.process.wait(30)  # type: ignore[union-attr]
    server.stop()

    assert server.returncode == 0, server.output
    assert time.monotonic() - started < 5, "the cut must not wait for the streams to end"
    for call in calls:
        assert call.status == 200 and not call.done
        assert call.error_codes == ["shutting_down"]
    rows = _rows(server)
    for call in calls:
        status, cost = rows[call.request_id or ""]
        assert status == 503
        assert 0 < cost < 100 * 10_000  # what was relayed, not the hold
    assert _ledger_balances(server, key["id"]) == sum(rows[c.request_id or ""][1] for c in calls)


@pytest.fixture
def worker_gateway(tmp_path: Path, slow_streams: FakeOpenAI) -> Iterator[Gateway]:
    server = _serve(tmp_path, slow_streams, workers=2)
    yield server
    server.stop()


def test_workers_drain_too(worker_gateway: Gateway) -> None:
    server = worker_gateway
    key = server.create_key(name="workers")
    known_everywhere(server, key["key"])
    calls = _start_streams(server, key["key"], 6)

    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for call in calls:
        call.join()
    server.process.wait(30)  # type: ignore[union-attr]
    server.stop()

    assert server.returncode == 0, server.output
    assert all(call.status == 200 and call.done and not call.error_codes for call in calls)
    rows = _rows(server)
    assert all(rows[call.request_id or ""][0] == 200 for call in calls)
    _ledger_balances(server, key["id"])
