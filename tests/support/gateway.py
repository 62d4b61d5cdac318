"""Runs the real gateway as a subprocess on a free port, plus the CLI beside it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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
        self._log_path = workdir / "gateway.log"
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Output goes to a file, not a pipe: a pipe nobody reads fills up after 64 KiB of
        # logs (say, tracebacks) and then blocks the gateway mid-request.
        self._log_path = self.workdir / "gateway.log"
        self._log_offset = self._log_path.stat().st_size if self._log_path.exists() else 0
        with self._log_path.open("a") as log:
            self.process = subprocess.Popen(
                [str(BIN / "omnirelay"), "serve"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.output_so_far()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout}s:\n{self.output}")

    def output_so_far(self) -> str:
        """What the running gateway has printed since it started."""
        with self._log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def stop(self) -> str:
        """Stop gracefully (SIGINT, as Ctrl-C) and return everything it printed."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            try:
                out, _ = self.process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, _ = self.process.communicate()
            # A process started elsewhere (serve --workers) may print to a pipe instead.
            self.output += out if out is not None else self.output_so_far()
            self.process = None
        return self.output

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
