"""Batches: lines per second, and what a running batch does to interactive calls.

For each batch concurrency (8, 32 and 128: ``batch_concurrency`` and
``batch_max_inflight`` both set to it), a fresh gateway (SQLite, one process, every feature
on: ``bench.gateway``) runs one 10,000-line chat batch whose model is served by an upstream
that answers after 20 ms. Measured:

- lines per second: the batch's lines over the time from its creation to ``completed``;
- the interactive added p50 and p99 at 4 connections (wrk, the seed's request on the
  instant upstream, minus going direct), without a batch and while the batch runs;
- ``/healthz`` p50 and p99 while the batch runs (a GET every 20 ms from another thread).

    python -m bench.batches [--lines 10000] [--concurrency 8 32 128]

It prints one row per concurrency; docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import httpx

from bench import wrk
from bench.gateway import SLOW_MODEL, Gateway, Mode
from bench.seed import SEED_REQUEST
from bench.upstream_process import PATH, Upstream

LATENCY_CONNECTIONS = 4
BATCH_UPSTREAM_MS = 20.0


def _input(lines: int) -> bytes:
    return b"".join(
        json.dumps(
            {"custom_id": f"line-{i}", "method": "POST", "url": PATH,
             "body": {**SEED_REQUEST, "model": SLOW_MODEL}}
        ).encode() + b"\n"
        for i in range(lines)
    )  # fmt: skip


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)] if ordered else 0.0


class HealthProbe(threading.Thread):
    """GETs /healthz every 20 ms until stopped, keeping each one's time."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.times_ms: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.halt.is_set():
                started = time.perf_counter()
                client.get(self.url + "/healthz")
                self.times_ms.append((time.perf_counter() - started) * 1000)
                self.halt.wait(0.02)


def measure(concurrency: int, lines: int, seconds: float) -> dict[str, Any]:
    fast, slow = Upstream(0.0, 0.0), Upstream(BATCH_UPSTREAM_MS, 0.0)
    env = {
        "OMNIRELAY_BATCH_CONCURRENCY": str(concurrency),
        "OMNIRELAY_BATCH_MAX_INFLIGHT": str(concurrency),
    }
    gateway = Gateway(Mode("batches"), fast.url + "/v1", slow.url + "/v1", env)
    gateway.start()
    try:
        lua = wrk.script(SEED_REQUEST, PATH, gateway.key)
        direct_lua = wrk.script(SEED_REQUEST, PATH, None)
        wrk.run(gateway.url + PATH, lua, LATENCY_CONNECTIONS, 2)  # warm-up
        direct = wrk.run(fast.url + PATH, direct_lua, LATENCY_CONNECTIONS, seconds)
        quiet = wrk.run(gateway.url + PATH, lua, LATENCY_CONNECTIONS, seconds)

        headers = {"Authorization": f"Bearer {gateway.key}"}
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=120) as client:
            uploaded = client.post(
                "/v1/files", data={"purpose": "batch"},
                files={"file": ("bench.jsonl", _input(lines), "application/jsonl")},
            ).json()  # fmt: skip
            started = time.monotonic()
            batch = client.post(
                "/v1/batches",
                json={"input_file_id": uploaded["id"], "endpoint": PATH,
                      "completion_window": "24h"},
            ).json()  # fmt: skip
            probe = HealthProbe(gateway.url)
            probe.start()
            busy = wrk.run(gateway.url + PATH, lua, LATENCY_CONNECTIONS, seconds)
            probe.halt.set()
            probe.join()
            while True:
                batch = client.get(f"/v1/batches/{batch['id']}").json()
                if batch["status"] not in ("in_progress", "finalizing"):
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - started
        counts = batch["request_counts"]
        if busy.requests and counts["completed"] + counts["failed"] < lines:
            raise RuntimeError(f"the batch ended {batch['status']}: {counts}")
    finally:
        gateway.stop()
        fast.stop()
        slow.stop()
    return {
        "concurrency": concurrency,
        "lines": lines,
        "status": batch["status"],
        "failed": counts["failed"],
        "lines_per_s": round(lines / elapsed, 1),
        "added_p50_ms_quiet": round((quiet.p50_us - direct.p50_us) / 1000, 3),
        "added_p50_ms_batch": round((busy.p50_us - direct.p50_us) / 1000, 3),
        "added_p99_ms_quiet": round((quiet.p99_us - direct.p99_us) / 1000, 3),
        "added_p99_ms_batch": round((busy.p99_us - direct.p99_us) / 1000, 3),
        "healthz_p50_ms": round(statistics.median(probe.times_ms), 2),
        "healthz_p99_ms": round(_percentile(probe.times_ms, 0.99), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    args = parser.parse_args(argv)
    rows = [measure(c, args.lines, args.seconds) for c in args.concurrency]
    names = list(rows[0])
    print(" | ".join(names))
    for row in rows:
        print(" | ".join(str(row[name]) for name in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
