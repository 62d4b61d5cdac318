"""Runs the real gateway as a subprocess on a free port, plus the CLI beside it."""

from __future__ import annotations

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
            **(env or {}),
        }
        if admin_key:
            self.env["OMNIRELAY_ADMIN_KEY"] = admin_key
        self.process: subprocess.Popen[str] | None = None
        self.output = ""
        self._lines: list[str] = []
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(BIN / "omnirelay"), "serve"],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines = []
        self._drain = threading.Thread(target=self._read_output, args=(self.process,), daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._drain.join(5)
                raise RuntimeError(f"gateway exited early:\n{self.peek_output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout}s:\n{self.output}")

    def stop(self) -> str:
        """Stop gracefully (SIGINT, as Ctrl-C) and return everything it printed."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self._drain is not None:
                self._drain.join(5)
            self.output += self.peek_output()
            self._lines = []
            self.process = None
        return self.output

    def _read_output(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.append(line)

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

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "omnirelay"), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
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


def wait_until(predicate: Any, timeout: float = 1.0, interval: float = 0.02) -> float:
    """Poll until ``predicate()`` is true; returns the seconds it took. Fails after timeout."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
