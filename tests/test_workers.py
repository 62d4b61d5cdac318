"""``omnirelay serve --workers 2``: two processes answer on one port, and a signal stops all."""

from __future__ import annotations

import select
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from support import processes
from support.gateway import BIN, Gateway, wait_until

WORKER_HEADER = "x-omnirelay-worker"


def _workers_of(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(pid) for pid in children.read_text().split()}


def _answering_pids(gateway: Gateway, calls: int = 200) -> set[int]:
    """Which processes answered, each call on a fresh connection (so spread by the kernel)."""
    pids = set()
    for _ in range(calls):
        response = httpx.get(gateway.url + "/healthz", timeout=5)
        assert response.status_code == 200
        pids.add(int(response.headers[WORKER_HEADER]))
        if len(pids) == 2:
            break
    return pids


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_two_workers_answer_on_one_port_and_a_signal_stops_them_all(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    gateway = Gateway(tmp_path)
    gateway.start(timeout=30, workers=2)
    assert gateway.process is not None
    try:
        workers = _workers_of(gateway.process.pid)
        assert len(workers) == 2, workers
        # Both workers serve the one port; each names itself on its responses.
        assert _answering_pids(gateway) == workers
        # Both run the whole gateway: the admin API of either sees the same database.
        created = gateway.create_key(name="any-worker")
        headers = {"Authorization": f"Bearer {created['key']}"}

        def every_worker_knows_the_key() -> bool:
            seen = set()
            for _ in range(100):
                response = httpx.get(gateway.base_url + "/models", headers=headers, timeout=5)
                if response.status_code != 200:
                    return False
                seen.add(int(response.headers[WORKER_HEADER]))
                if seen == workers:
                    return True
            return False

        wait_until(every_worker_knows_the_key, timeout=3.0)
    finally:
        output = gateway.stop(stop_signal, timeout=30)
    assert gateway.returncode == 0, output
    assert "2 workers without OMNIRELAY_REDIS_URL" in output  # limits are per worker: said once
    assert output.count("without OMNIRELAY_REDIS_URL") == 1
    # Checked before the stragglers were killed: the workers ended with their parent.
    assert not gateway.stragglers, output
    with pytest.raises(httpx.ConnectError):
        httpx.get(gateway.url + "/healthz", timeout=2)


def test_the_port_in_use_is_reported(tmp_path: Path) -> None:
    first = Gateway(tmp_path / "first")
    first.start()
    try:
        env = {**first.env}
        result = processes.run(
            [str(BIN / "omnirelay"), "serve", "--workers", "2"], cwd=first.workdir, env=env
        )
    finally:
        first.stop()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_workers_apply_the_connection_limits(tmp_path: Path) -> None:
    cap = 20
    gateway = Gateway(
        tmp_path,
        env={"OMNIRELAY_MAX_CONNECTIONS": str(cap), "OMNIRELAY_HEADER_TIMEOUT_S": "3"},
    )
    gateway.start(timeout=30, workers=2)
    sockets: list[socket.socket] = []
    try:
        wait_until(lambda: len(_answering_pids(gateway)) == 2, timeout=30)  # both listen
        time.sleep(0.5)  # and have let go of those probing connections
        # The kernel spreads 100 connections over both workers; each takes `cap` of them.
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            sock.settimeout(10)
            sockets.append(sock)
        time.sleep(1.0)  # the refusals arrive at once; the header deadline is further off
        refused = select.select(sockets, [], [], 0)[0]
        assert len(refused) == 100 - 2 * cap
        for sock in refused:
            assert sock.recv(65536).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        # Those held are closed at the header deadline, having sent nothing.
        held = [sock for sock in sockets if sock not in refused]
        started = time.monotonic()
        for sock in held:
            assert select.select([sock], [], [], 10)[0]
            assert sock.recv(65536) == b""
        assert time.monotonic() - started < 10
        response = httpx.get(gateway.base_url + "/models/" + "m" * 9000, timeout=5)
        assert response.status_code == 414
        assert response.json()["error"]["code"] == "uri_too_long"
        assert response.headers["Server"] == "omnirelay"
    finally:
        for sock in sockets:
            sock.close()
        gateway.stop(signal.SIGTERM, timeout=30)
