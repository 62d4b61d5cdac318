"""The fast fake upstream (``bench/upstream.py``) in a process of its own, started and
waited for until it answers the seed's request."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.gateway import free_port, http
from bench.seed import SEED_REQUEST

PATH = "/v1/chat/completions"


class Upstream:
    def __init__(self, latency_ms: float, event_gap_ms: float, jitter_ms: float = 0.0) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.upstream", "--port", str(self.port),
             "--latency-ms", str(latency_ms), "--jitter-ms", str(jitter_ms),
             "--event-gap-ms", str(event_gap_ms)],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if http("POST", self.url + PATH, SEED_REQUEST)[0] == 200:
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
