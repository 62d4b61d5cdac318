"""Runs the real gateway as a subprocess on a free port, plus the CLI beside it.

Both go through :mod:`support.processes`: each in a process group of its own that does
not outlive the test run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from support import processes

ADMIN_KEY = "sk-admin-test-0123456789abcdef0123456789abcdef"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        admin_key: str | None = ADMIN_KEY,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.admin_key = admin_key
        self.env = {
            **os.environ,
            "OMNIRELAY_PORT": str(self.port),
            "OMNIRELAY_HOST": "127.0.0.1",
            "OMNIRELAY_LOG_LEVEL": "warning",
            # The embedded PDF parser's channel is made at start; the tests that want it
            # ask for it, so that the others see only the channels they add.
            "OMNIRELAY_EMBEDDED_PDF_PARSER": "false",
            **(env or {}),
        }
        if admin_key:
            self.env["OMNIRELAY_ADMIN_KEY"] = admin_key
        self.process: subprocess.Popen[str] | None = None
        self.output = ""
        self.returncode: int | None = None  # of the last process stopped
        self.stragglers: list[int] = []  # its group's processes that outlived it (killed)
        self._lines: list[str] = []  # what the running process printed so far
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 20.0, *, workers: int = 1) -> None:
        """Start ``omnirelay serve`` (``--workers N`` when more than one) and wait until up."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [str(BIN / "omnirelay"), "serve"]
        if workers > 1:
            command += ["--workers", str(workers)]
        self.process = process = processes.spawn(
            command,
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._lines = []
        self._drain = threading.Thread(target=self._read_output, args=(process,), daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.stop()
                raise RuntimeError(f"gateway exited early:\n{self.output}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout}s:\n{self.output}")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 15.0) -> str:
        """Stop gracefully (SIGINT, as Ctrl-C) and return everything it printed.

        What is left of its process group once it exited is killed, and noted in
        ``stragglers``.
        """
        if self.process is not None:
            stopped = processes.stop(self.process, signum, timeout, read_output=False)
            self._collect()
            self.returncode, self.stragglers = stopped.returncode, stopped.stragglers
            self.process = None
        return self.output

    def _read_output(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.append(line)

    def _collect(self) -> None:
        if self._drain is not None:
            self._drain.join(5)
            self._drain = None
        self.output += self.peek_output()
        self._lines = []

    def peek_output(self) -> str:
        """What the running gateway has printed so far."""
        return "".join(self._lines)

    def _proc_status(self, field: str) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc status")

    def rss_bytes(self) -> int:
        return self._proc_status("VmRSS")

    def peak_rss_bytes(self) -> int:
        return self._proc_status("VmHWM")

    def reset_peak_rss(self) -> int:
        """Start counting the peak afresh (Linux: clear_refs 5); returns the RSS now."""
        assert self.process is not None
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        return self.rss_bytes()

    def kill(self) -> None:
        """SIGKILL its whole process group at once, as a crash would."""
        if self.process is not None:
            processes.kill(self.process, read_output=False)
            self._collect()
            self.process = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = processes.run(
            [str(BIN / "omnirelay"), *args], cwd=self.workdir, env=self.env, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"omnirelay {' '.join(args)} failed:\n{result.stderr}")
        return result

    # -- admin API helpers -----------------------------------------------------------------

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            self.url + path,
            json=json,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=10,
        )

    def add_channel(self, **fields: Any) -> dict[str, Any]:
        response = self.admin("POST", "/admin/channels", fields)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def create_key(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("name", "test")
        response = self.admin("POST", "/admin/keys", fields)
        assert response.status_code == 201, response.text
        return dict(response.json())


def known_everywhere(gateway: Gateway, key: str, tries: int = 8, timeout: float = 5.0) -> None:
    """Wait until every worker of ``gateway`` knows a key just created (each learns it
    within about a second through the change feed): ``tries`` fresh connections in a row
    accept it, as the kernel spreads them over the workers."""

    def accepted() -> bool:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(tries):
            with httpx.Client(timeout=5) as client:
                if client.get(gateway.base_url + "/models", headers=headers).status_code != 200:
                    return False
        return True

    wait_until(accepted, timeout=timeout, interval=0.1)


def wait_until(predicate: Any, timeout: float = 1.0, interval: float = 0.02) -> float:
    """Poll until ``predicate()`` is true; returns the seconds it took. Fails after timeout."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def wait_until_async(predicate: Any, timeout: float = 1.0, interval: float = 0.005) -> float:
    """:func:`wait_until` for a coroutine: ``await predicate()`` while other tasks run."""
    start = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
