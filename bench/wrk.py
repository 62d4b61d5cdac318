"""Load with ``wrk`` (Debian: ``apt-get install wrk``) and a Lua script that POSTs the seed.

wrk is closed-loop: each connection sends its next request when the last one is answered.
The script's ``done`` hook prints the summary and the latency percentiles as one JSON line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARK = "BENCH_JSON "
INSTALL_HINT = "wrk is not installed: apt-get install wrk (Debian/Ubuntu)"

SCRIPT = """
wrk.method = "POST"
wrk.path = "%(path)s"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(auth)s
%(delay)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"mean_us":%%.1f,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non_2xx: int
    p50_us: float
    p99_us: float
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def script(body: dict[str, Any], path: str, key: str | None, think_ms: float = 0.0) -> Path:
    """Write a Lua script that POSTs ``body`` to ``path``; returns its file."""
    text = SCRIPT % {
        "path": path,
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "auth": f'wrk.headers["Authorization"] = "Bearer {key}"' if key else "",
        "delay": f"delay = function() return {think_ms} end" if think_ms else "",
        "mark": MARK,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-", delete=False) as handle:
        handle.write(text)
    return Path(handle.name)


def run(url: str, lua: Path, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    command = [
        require(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
        "--timeout", "10s", "-s", str(lua), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=errors,
                non_2xx=data["status"],
                p50_us=data["p50_us"],
                p99_us=data["p99_us"],
                mean_us=data["mean_us"],
            )
    raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
