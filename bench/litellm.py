"""LiteLLM's proxy, for comparison: its own virtualenv under bench/, never the project's.

Installed from PyPI (``litellm[proxy]``) on first use into ``bench/.litellm-venv``, and
configured as the anchor figures were: a master key, no database, callbacks off, no
retries, one worker, pointed at the same fake upstream.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gateway import free_port, http

VENV = Path(__file__).resolve().parent / ".litellm-venv"
MASTER_KEY = "sk-litellm-bench-master"
CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream}
      api_key: sk-upstream-bench
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {slow_upstream}
      api_key: sk-upstream-bench
litellm_settings:
  num_retries: 0
  request_timeout: 60
  callbacks: []
  success_callback: []
  failure_callback: []
  set_verbose: false
general_settings:
  master_key: {key}
"""


def ensure_installed() -> Path:
    binary = VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"installing litellm[proxy] into {VENV} (one time)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "litellm[proxy]"], check=True)
    return binary


class LiteLLM:
    def __init__(self, upstream_url: str, slow_upstream_url: str, workdir: Path) -> None:
        self.slow_upstream_url = slow_upstream_url
        self.port = free_port()
        self.key = MASTER_KEY
        self.workdir = workdir
        self.upstream_url = upstream_url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        binary = ensure_installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "litellm.yaml"
        config.write_text(
            CONFIG.format(
                upstream=self.upstream_url, slow_upstream=self.slow_upstream_url, key=MASTER_KEY
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNIRELAY_", "VIRTUAL"))}
        env.update(
            {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "true"}
        )
        self.process = subprocess.Popen(
            [str(binary), "--config", str(config), "--host", "127.0.0.1",
             "--port", str(self.port), "--num_workers", "1"],
            cwd=self.workdir, env=env,
            stdout=open(self.workdir / "litellm.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"litellm exited: see {self.workdir / 'litellm.log'}")
            try:
                if http("GET", self.url + "/health/liveliness")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"litellm did not start: see {self.workdir / 'litellm.log'}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
