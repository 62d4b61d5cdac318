"""Run every benchmark mode side by side and print one table.

    .venv/bin/python -m bench                  # all modes and the soak, ~6 minutes
    .venv/bin/python -m bench --quick          # SQLite only, short runs, no soak
    .venv/bin/python -m bench --litellm        # add LiteLLM's proxy as a row
    .venv/bin/python -m bench --hostile        # only the hostile upstreams (bench.hostile)

Each mode starts a fresh gateway on a fresh database against the same fake upstream, warms
it up, then measures with wrk: non-stream at 32 connections (RPS, CPU per call), streams
at 16 (CPU per stream event), non-stream at 4 (added latency), and one connection of
sequential streams (time to first token). CPU is read from /proc for the gateway's whole
process tree before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import hostile, procs, wrk
from bench.gateway import BIN, SLOW_MODEL, Gateway, Mode, free_port, http
from bench.seed import SEED_REQUEST, STREAM_EVENTS, stream_request
from bench.ttft import ttft_us
from bench.upstream_process import PATH, Upstream

RESULTS = Path(__file__).resolve().parent / "results"
NON_STREAM_CONNECTIONS = 32
STREAM_CONNECTIONS = 16
LATENCY_CONNECTIONS = 4
SLOW_JITTER_MS = 2.0  # keeps the four latency connections out of step

MODES = {
    "sqlite": Mode("SQLite, 1 process"),
    "strict": Mode("SQLite, 1 process, strict settlement", strict=True),
    "workers": Mode("SQLite, {n} workers", workers=2),
    "pg": Mode("PostgreSQL + Redis, 1 process", postgres=True, redis=True),
    "pg-workers": Mode("PostgreSQL + Redis, {n} workers", workers=2, postgres=True, redis=True),
}


@dataclass
class Target:
    name: str
    url: str
    key: str | None
    pid: int | None  # the process tree whose CPU counts; None for direct
    slow_url: str = ""  # where the latency run goes when the upstream takes its time
    workers: int = 1
    gateway: Gateway | None = None  # to wait for its log writer before reading CPU


@dataclass
class Row:
    name: str
    rps: float = 0.0
    streams_per_s: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    slow_p50_us: float = 0.0
    slow_p99_us: float = 0.0
    cpu_call_us: float | None = None
    cpu_event_us: float | None = None
    ttft_us: float = 0.0
    rss_mb: float | None = None
    pss_mb: float | None = None
    other_load: float = 0.0  # cores busy outside the harness during the CPU runs (noise)
    log_lag_s: float = 0.0  # the longest wait, after a run, for the log writer to catch up
    failures: int = 0
    log_rows: dict[str, int] = field(default_factory=dict)
    calls: int = 0


class Upstreams:
    """The fast fake upstream, and one that answers after ``--slow-upstream-ms``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.fast = Upstream(args.latency_ms, args.event_gap_ms)
        self.slow = Upstream(args.slow_upstream_ms, args.event_gap_ms, SLOW_JITTER_MS)

    def gateway(self, mode: Mode, args: argparse.Namespace) -> Gateway:
        env = dict(item.split("=", 1) for item in args.env)
        return Gateway(mode, self.fast.url + "/v1", self.slow.url + "/v1", env, args.keep)

    def stop(self) -> None:
        self.fast.stop()
        self.slow.stop()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.duration: float = args.duration

    def measure(self, target: Target, profile_to: Path | None = None) -> Row:
        row = Row(target.name)
        plain = wrk.script(SEED_REQUEST, PATH, target.key)
        streamed = wrk.script(stream_request(), PATH, target.key)
        slow = wrk.script({**SEED_REQUEST, "model": SLOW_MODEL}, PATH, target.key)
        url = target.url + PATH
        try:
            wrk.run(url, plain, NON_STREAM_CONNECTIONS, 2)  # warm-up
            wrk.run(url, streamed, STREAM_CONNECTIONS, 1)
            self._wait_quiet()

            with self._cpu(target, row) as used:
                result = wrk.run(url, plain, NON_STREAM_CONNECTIONS, self.duration)
                used.append(result.requests)
            row.rps, row.calls = result.rps, result.requests
            row.failures += result.errors + result.non_2xx
            if len(used) > 1:
                row.cpu_call_us = used[1] / result.requests * 1e6

            with self._cpu(target, row) as used:
                result = wrk.run(url, streamed, STREAM_CONNECTIONS, self.duration)
                used.append(result.requests)
            row.streams_per_s, row.calls = result.rps, row.calls + result.requests
            row.failures += result.errors + result.non_2xx
            if len(used) > 1:
                row.cpu_event_us = used[1] / (result.requests * STREAM_EVENTS) * 1e6

            result = wrk.run(url, plain, LATENCY_CONNECTIONS, self.duration)
            row.p50_us, row.p99_us = result.p50_us, result.p99_us
            row.calls += result.requests
            row.failures += result.errors + result.non_2xx

            result = wrk.run(target.slow_url + PATH, slow, LATENCY_CONNECTIONS, self.duration)
            row.slow_p50_us, row.slow_p99_us = result.p50_us, result.p99_us
            row.calls += result.requests
            row.failures += result.errors + result.non_2xx

            host, port = target.url.removeprefix("http://").rsplit(":", 1)
            row.ttft_us, _ = ttft_us(host, int(port), PATH, stream_request(), target.key,
                                     self.args.ttft_count)  # fmt: skip
            row.calls += self.args.ttft_count + 20
            if target.pid is not None:
                sample = procs.sample(target.pid)
                row.rss_mb = max(procs.workers_rss(sample, target.pid))
                row.pss_mb = max(procs.pss_mb(pid) for pid in sample.rss_mb)
            if profile_to is not None and target.pid is not None:
                self._profile(target, url, plain, streamed, profile_to)
        finally:
            for path in (plain, streamed, slow):
                path.unlink()
        return row

    def _wait_quiet(self, threshold: float = 0.15, patience_s: float = 20.0) -> None:
        """Wait (a while) until other processes leave the cores alone: the machine is shared."""
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            if procs.other_load(os.getpid()) < threshold:
                return

    @contextmanager
    def _cpu(self, target: Target, row: Row) -> Iterator[list[float]]:
        """CPU of the target's tree over the block, which appends the calls it made.

        With a gateway, the reading waits for its log writer to commit every call's row.
        """
        used: list[float] = []
        logged = target.gateway.log_count() if target.gateway else 0
        machine, own = procs.machine_busy_s(), procs.tree_cpu_s(os.getpid())
        started = time.monotonic()
        before = procs.sample(target.pid) if target.pid is not None else None
        yield used
        if target.gateway is not None:
            lag = target.gateway.wait_for_log(int(used[0]), logged)
            row.log_lag_s = max(row.log_lag_s, lag)
        if before is not None and target.pid is not None:
            used.append(procs.cpu_used(before, procs.sample(target.pid)))
        other = (procs.machine_busy_s() - machine) - (procs.tree_cpu_s(os.getpid()) - own)
        row.other_load = max(row.other_load, other / (time.monotonic() - started))

    def _profile(self, target: Target, url: str, plain: Path, streamed: Path, out: Path) -> None:
        """py-spy over a non-stream and a stream run (workers: the first one only)."""
        spy = BIN / "py-spy"
        pids = procs.tree(target.pid or 0)
        pid = pids[1] if len(pids) > 1 else pids[0]
        out.mkdir(parents=True, exist_ok=True)
        for name, script, connections in (("non-stream", plain, 32), ("stream", streamed, 16)):
            stacks = out / f"{name}.txt"
            spy_run = subprocess.Popen(
                [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                 "--duration", str(int(self.duration)), "--output", str(stacks), "--nonblocking",
                 "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            wrk.run(url, script, connections, self.duration)
            spy_run.wait(timeout=60)
            print(f"  profile of {name}: {stacks}", flush=True)


def gateway_row(bench: Bench, mode: Mode, upstreams: Upstreams) -> Row:
    gateway = upstreams.gateway(mode, bench.args)
    print(f"-- {mode.name}", flush=True)
    try:
        gateway.start()
        target = Target(
            mode.name, gateway.url, gateway.key, gateway.pid, gateway.url, mode.workers, gateway
        )
        profile = RESULTS / "profile" if bench.args.profile and mode.workers == 1 else None
        row = bench.measure(target, profile if not mode.postgres and not mode.strict else None)
    finally:
        rows = gateway.stop()
    row.log_rows = rows
    return row


def soak(bench: Bench, upstreams: Upstreams, calls: int) -> dict[str, Any]:
    """``calls`` calls, non-stream and stream in turns, with RSS sampled every second."""
    gateway = upstreams.gateway(Mode("soak", workers=1), bench.args)
    print(f"-- soak: {calls} calls on SQLite, 1 process", flush=True)
    samples: list[tuple[float, int, float]] = []  # (seconds, calls so far, RSS MB)
    done = 0
    stop = threading.Event()
    started = time.monotonic()

    def sampler() -> None:
        while not stop.wait(1.0):
            samples.append((time.monotonic() - started, done, procs.rss_mb(gateway.pid)))

    url = gateway.url + PATH
    thread = threading.Thread(target=sampler, daemon=True)
    failures = 0
    scripts: list[Path] = []
    try:
        gateway.start()
        plain = wrk.script(SEED_REQUEST, PATH, gateway.key)
        streamed = wrk.script(stream_request(), PATH, gateway.key)
        scripts += (plain, streamed)
        wrk.run(url, plain, NON_STREAM_CONNECTIONS, 2)
        start_rss = procs.rss_mb(gateway.pid)
        bench._wait_quiet()
        thread.start()
        logged = gateway.log_count()
        before = procs.sample(gateway.pid)
        machine, own, began = procs.machine_busy_s(), procs.tree_cpu_s(os.getpid()), time.time()
        turn = 0
        while done < calls:
            script, connections = (plain, 32) if turn % 2 == 0 else (streamed, 16)
            result = wrk.run(url, script, connections, 5)
            done += result.requests
            failures += result.errors + result.non_2xx
            turn += 1
        lag = gateway.wait_for_log(done, logged)
        cpu = procs.cpu_used(before, procs.sample(gateway.pid))
        other = (procs.machine_busy_s() - machine) - (procs.tree_cpu_s(os.getpid()) - own)
        other_load = other / (time.time() - began)
    finally:
        stop.set()
        rows = gateway.stop()
        for path in scripts:
            path.unlink()
    rss = [mb for _, _, mb in samples]
    tenth = max(len(rss) // 10, 1)
    first, last = statistics.mean(rss[:tenth]), statistics.mean(rss[-tenth:])
    report: dict[str, Any] = {
        "calls": done,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
        "cpu_us_per_call": round(cpu / done * 1e6, 1),
        "other_load_cores": round(other_load, 2),
        "log_lag_at_end_s": round(lag, 1),
        "rss_after_warmup_mb": round(start_rss, 1),
        "rss_first_tenth_mb": round(first, 1),
        "rss_last_tenth_mb": round(last, 1),
        "growth_mb": round(last - first, 1),
        "rss_max_mb": round(max(rss), 1),
        "curve": [
            (round(t, 1), n, round(mb, 1)) for t, n, mb in samples[:: max(len(samples) // 20, 1)]
        ],
        "log_rows": rows,
    }
    return report


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value / 1000:.2f}"


def table(rows: list[Row], direct: Row) -> str:
    """One line per target; the direct row shows absolute times in parentheses."""
    lines = [
        "| Target | RPS (32 conn) | Streams/s (16) | Added p50 / p99 ms, 4 conn, "
        "upstream 0 ms | Added p50 / p99 ms, 4 conn, upstream slow | CPU µs/call "
        "| CPU µs/stream event | TTFT added ms | RSS MB/worker | Other load (cores) | Failed |",
        "|" + "---|" * 11,
    ]
    for row in rows:
        if row is direct:
            fast = f"({_ms(row.p50_us)} / {_ms(row.p99_us)})"
            slow = f"({_ms(row.slow_p50_us)} / {_ms(row.slow_p99_us)})"
            ttft = f"({_ms(row.ttft_us)})"
        else:
            fast = f"{_ms(row.p50_us - direct.p50_us)} / {_ms(row.p99_us - direct.p99_us)}"
            slow = (
                f"{_ms(row.slow_p50_us - direct.slow_p50_us)} / "
                f"{_ms(row.slow_p99_us - direct.slow_p99_us)}"
            )
            ttft = _ms(row.ttft_us - direct.ttft_us)
        rss = "—" if row.rss_mb is None else f"{row.rss_mb:.0f}"
        lines.append(
            f"| {row.name} | {row.rps:,.0f} | {row.streams_per_s:,.0f} | {fast} | {slow} | "
            f"{_us(row.cpu_call_us)} | {_us(row.cpu_event_us)} | {ttft} | {rss} | "
            f"{row.other_load:.2f} | {row.failures} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "?",
    )  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="sqlite,strict,workers,pg,pg-workers",
                        help=f"comma-separated, of: {', '.join(MODES)}")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="for the worker modes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--soak-calls", type=int, default=100_000, help="0 skips the soak")
    parser.add_argument("--ttft-count", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the upstream's")
    parser.add_argument("--slow-upstream-ms", type=float, default=20.0,
                        help="the latency of the upstream of the second latency run")  # fmt: skip
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the gateway (repeatable)")  # fmt: skip
    parser.add_argument("--event-gap-ms", type=float, default=0.0, help="between events")
    parser.add_argument("--litellm", action="store_true", help="add LiteLLM's proxy")
    parser.add_argument("--no-bare", action="store_true",
                        help="leave out the bare aiohttp relay (the floor)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep each gateway's folder (database, gateway.log)")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="py-spy the SQLite modes")
    parser.add_argument("--quick", action="store_true", help="SQLite only, 5 s runs, no soak")
    parser.add_argument("--hostile", action="store_true",
                        help="only the hostile-upstream cases (bench.hostile)")  # fmt: skip
    hostile.add_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.modes, args.duration, args.soak_calls = "sqlite", 5.0, 0
    return args


def main() -> int:
    args = _parse()
    if args.hostile:
        return hostile.run(args)
    wrk.require()
    bench = Bench(args)
    upstreams = Upstreams(args)
    rows: list[Row] = []
    report: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    try:
        print("-- direct to the fake upstream", flush=True)
        target = Target("direct to upstream", upstreams.fast.url, None, None, upstreams.slow.url)
        direct = bench.measure(target)
        rows.append(direct)
        if not args.no_bare:
            rows.append(bare_row(bench, upstreams))
        for name in filter(None, (name.strip() for name in args.modes.split(","))):
            mode = MODES[name]
            label = mode.name.format(n=args.workers)
            workers = args.workers if mode.workers > 1 else 1
            mode = Mode(label, workers, mode.postgres, mode.redis, mode.strict)
            try:
                rows.append(gateway_row(bench, mode, upstreams))
            except Exception as exc:  # one broken mode must not lose the others' figures
                print(f"   FAILED: {exc}", flush=True)
                report.setdefault("failed", {})[label] = str(exc)[-2000:]
        if args.litellm:
            rows.append(litellm_row(bench, upstreams))
        if args.soak_calls:
            try:
                report["soak"] = soak(bench, upstreams, args.soak_calls)
            except Exception as exc:
                print(f"   FAILED: {exc}", flush=True)
                report.setdefault("failed", {})["soak"] = str(exc)[-2000:]
    finally:
        upstreams.stop()
    report["rows"] = [asdict(row) for row in rows]
    text = table(rows, direct)
    print("\n" + text)
    if "soak" in report:
        print("\nsoak:", json.dumps({k: v for k, v in report["soak"].items() if k != "curve"}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "latest.md").write_text(text + "\n")
    print(f"\nwritten: {RESULTS / 'latest.md'} and latest.json")
    return 0


def bare_row(bench: Bench, upstreams: Upstreams) -> Row:
    from bench.bare_relay import BareRelay

    print("-- bare aiohttp relay", flush=True)
    relay = BareRelay(upstreams.fast.url, upstreams.slow.url, free_port())
    try:
        relay.wait_ready(lambda url: http("POST", url + PATH, SEED_REQUEST)[0] == 200)
        target = Target("bare aiohttp relay, no features", relay.url, None, relay.pid, relay.url)
        return bench.measure(target)
    finally:
        relay.stop()


def litellm_row(bench: Bench, upstreams: Upstreams) -> Row:
    from bench.litellm import LiteLLM

    proxy = LiteLLM(upstreams.fast.url + "/v1", upstreams.slow.url + "/v1", RESULTS / "litellm")
    print("-- LiteLLM proxy", flush=True)
    proxy.start()
    try:
        target = Target("LiteLLM proxy", proxy.url, proxy.key, proxy.pid, proxy.url)
        return bench.measure(target)
    finally:
        proxy.stop()
