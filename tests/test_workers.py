"""``omnirelay serve --workers 2``: two processes answer on one port, and a signal stops all."""

from __future__ import annotations

import signal
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
