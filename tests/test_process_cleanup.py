"""SIGINT or SIGTERM to pytest leaves none of the processes its tests started.

A pytest of its own runs a test that starts ``serve --workers 2``, and a shell whose
child, unlike the gateway's workers, does not notice its parent go; then it waits. Every
process of that run carries a marker in its environment, so what survives the signal is
found by reading ``/proc/*/environ``, whoever its parent now is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import processes
from support.gateway import wait_until

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
MARKER = "TESTS_PROCESS_PROBE"
READY = "TESTS_PROCESS_PROBE_READY"
HELD_TEST = f"""
import os
import time
from pathlib import Path

from support import processes
from support.gateway import Gateway


def test_hold_a_gateway_with_workers(tmp_path):
    gateway = Gateway(tmp_path / "gateway")
    gateway.start(timeout=60, workers=2)
    processes.spawn(["sh", "-c", "sleep 300 & wait"])
    Path(os.environ["{READY}"]).write_text("up")
    time.sleep(300)  # until the signal comes
"""
SURVIVAL_S = 5.0


def _marked(token: str) -> set[int]:
    """Live processes whose environment carries ``token``."""
    needle = f"{MARKER}={token}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.add(int(environ.parent.name))
        except OSError:
            continue  # ended while we looked, or not ours to read
    return found  # a zombie's environment reads empty: ended processes never count


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_pytest_leaves_no_process_of_its_run(
    tmp_path: Path, signum: signal.Signals
) -> None:
    token = secrets.token_hex(8)
    ready = tmp_path / "ready"
    test_file = tmp_path / "test_held.py"
    test_file.write_text(HELD_TEST)
    env = {**os.environ, MARKER: token, READY: str(ready), "PYTHONPATH": str(TESTS)}
    # -p conftest: the suite's own conftest.py, which a file outside tests/ would not load.
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
        "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO),
        f"--basetemp={tmp_path / 'run'}", str(test_file),
    ]  # fmt: skip
    run = processes.spawn(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: ready.exists() or run.poll() is not None, timeout=90, interval=0.1)
        assert run.poll() is None, processes.stop(run).output
        started = _marked(token)
        # The proof that the search sees them: pytest, the gateway and its two workers,
        # the shell and its sleep.
        assert run.pid in started and len(started) >= 6, started

        run.send_signal(signum)
        try:
            wait_until(lambda: not _marked(token), timeout=SURVIVAL_S, interval=0.1)
        except AssertionError:
            survivors = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _marked(token)}
            raise AssertionError(f"alive {SURVIVAL_S}s after {signum.name}: {survivors}") from None
    finally:
        for pid in _marked(token):  # whatever a failure left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        processes.kill(run)
