"""Hostile upstreams: what runaway streams do to /healthz, and 2 GiB answers to memory.

    .venv/bin/python -m bench.hostile            # about a minute on 2 shared cores
    .venv/bin/python -m bench --hostile          # the same
    .venv/bin/python -m bench.hostile --streams 20 --tokens 100000 --huge-gib 2

A fresh gateway for each case (SQLite, one process, every feature on, as ``bench.gateway``
sets it up: two channels on the fake upstream, so a failed non-stream call is tried on
both), with the upper bounds on upstream answers at their defaults, against the fake
upstream's hostile answers (``bench.upstream``):

1. ``--streams`` concurrent streams of ``--tokens`` one-token chunks each, written as fast
   as the gateway reads them, while a raw client in its own process polls ``/healthz``
   every 10 ms on one keep-alive connection. Reported: /healthz p50/p99 (the bar: p99 ≤
   50 ms), and the gateway's CPU per stream event over the run (read from /proc once the
   log writer has committed every stream's row). The same streams then go through the
   bare relay (``bench.bare_relay``, which parses each event), for its CPU per event.
2. A non-stream answer of ``--huge-gib`` GiB, chunked, against
   ``OMNIRELAY_MAX_UPSTREAM_BODY_BYTES``; then a stream whose second event is that long,
   against ``OMNIRELAY_MAX_UPSTREAM_EVENT_BYTES``. Reported: what the client got and how
   long it took, what the upstream managed to write (over every attempt the gateway
   made), and how much the gateway's peak RSS grew: VmHWM from /proc/<pid>/status, after
   writing 5 to /proc/<pid>/clear_refs to start the peak afresh (the bar: at most the cap
   + 32 MiB).

The table is printed and written to ``bench/results/hostile.md``; every figure goes to
``hostile.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.gateway import Gateway, Mode
from bench.seed import stream_request
from bench.upstream_process import Upstream

PATH = "/v1/chat/completions"
RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_BODY_CAP = 64 * MIB  # the gateway's defaults, unless --env sets them
DEFAULT_EVENT_CAP = 8 * MIB
RSS_SLACK = 32 * MIB
HEALTHZ_P99_BAR_MS = 50.0
POLL_INTERVAL_S = 0.010


# -- /healthz, polled from its own process --------------------------------------------------


def _poll(port: int, interval_s: float, control: Connection) -> None:
    """Poll /healthz every ``interval_s`` until told to stop; send back each poll's
    (start, latency) in seconds."""
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies: list[tuple[float, float]] = []
    failures: list[str] = []
    control.send("ready")
    began = next_at = time.perf_counter()
    while not control.poll():
        started = time.perf_counter()
        try:
            sock.sendall(request)
            _read_response(sock)
            latencies.append((started - began, time.perf_counter() - started))
        except (OSError, ValueError) as exc:
            failures.append(f"{started - began:.3f} s: {type(exc).__name__}: {exc}")
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        # Polls start every interval; one that took longer is followed at once.
        next_at = max(next_at + interval_s, time.perf_counter())
        time.sleep(max(next_at - time.perf_counter(), 0.0))
    sock.close()
    control.send((latencies, failures))


def _read_response(sock: socket.socket) -> None:
    """Read one small response with a Content-Length; ValueError on anything but a 200."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            raise ValueError("closed")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head[:80].decode(errors="replace"))
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line[15:])
    while len(body) < length:
        more = sock.recv(4096)
        if not more:
            raise ValueError("closed")
        body += more


class HealthzPoller:
    """The poller's process: start it, run the load, then ``stop`` for the latencies."""

    def __init__(self, port: int, interval_s: float = POLL_INTERVAL_S) -> None:
        context = multiprocessing.get_context("fork")
        self._control, child = context.Pipe()
        self._process = context.Process(target=_poll, args=(port, interval_s, child))
        self._process.start()
        if not self._control.poll(30) or self._control.recv() != "ready":
            raise RuntimeError("the /healthz poller did not start")

    def stop(self) -> tuple[list[tuple[float, float]], list[str]]:
        self._control.send("stop")
        latencies, failures = self._control.recv()
        self._process.join(timeout=10)
        return latencies, failures


@dataclass
class Polled:
    polls: int = 0
    failures: int = 0
    failed: list[str] = field(default_factory=list)  # when, and why, the first ten
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    over_10ms: int = 0
    slowest: list[tuple[float, float]] = field(default_factory=list)
    """The 20 slowest polls: (seconds into the run, latency ms), in time order."""

    @classmethod
    def of(cls, polls: list[tuple[float, float]], failures: list[str]) -> Polled:
        if not polls:
            return cls(0, len(failures), failed=failures[:10])
        ms = sorted(latency * 1000 for _, latency in polls)
        p99 = ms[min(int(len(ms) * 0.99), len(ms) - 1)]
        slowest = sorted(sorted(polls, key=lambda p: p[1])[-20:])
        return cls(
            len(ms), len(failures), failures[:10], statistics.median(ms), p99, ms[-1],
            sum(x > 10 for x in ms), [(round(t, 3), round(x * 1000, 1)) for t, x in slowest],
        )  # fmt: skip


# -- runaway streams ------------------------------------------------------------------------


@dataclass
class StreamRun:
    target: str
    streams: int
    tokens: int
    events_expected: int = 0  # role + content + finish + usage chunks, per stream x streams
    events_relayed: int = 0  # ``data:`` events the clients received, [DONE] included
    completed: int = 0  # streams that ended with [DONE] and a 200
    bytes_relayed: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # the target's process tree
    cpu_us_per_event: float = 0.0
    other_load_cores: float = 0.0
    log_lag_s: float = 0.0
    peak_rss_growth_mb: float = 0.0
    healthz_idle: Polled | None = None
    healthz: Polled | None = None


async def _one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, int, bool]:
    """Send one stream request and read it to its end: (events, bytes, ended well)."""
    events = done = total = 0
    tail = b""
    async with session.post(url, data=body, headers=headers) as response:
        async for data in response.content.iter_any():
            total += len(data)
            # The tail of the last read completes a mark split across two reads.
            seen = tail + data
            events += seen.count(b"data:") - tail.count(b"data:")
            done += seen.count(b"[DONE]") - tail.count(b"[DONE]")
            tail = seen[-16:]
    return events, total, response.status == 200 and done == 1


async def _streams(
    port: int, key: str | None, count: int, tokens: int
) -> list[tuple[int, int, bool]]:
    body = {**stream_request(), "bench_answer": "long-stream", "bench_tokens": tokens}
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"http://127.0.0.1:{port}{PATH}"
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await asyncio.gather(
            *(_one_stream(session, url, payload, headers) for _ in range(count))
        )


def runaway_streams(
    target: str, port: int, pid: int, count: int, tokens: int, gateway: Gateway | None = None
) -> StreamRun:
    """``count`` streams of ``tokens`` chunks through the target; with a gateway, /healthz
    is polled meanwhile (and a moment before, idle) and its log rows waited for."""
    run = StreamRun(target, count, tokens, events_expected=count * (tokens + 3))
    poller = None
    if gateway is not None:
        poller = HealthzPoller(port)
        time.sleep(2.0)
        run.healthz_idle = Polled.of(*poller.stop())
        logged = gateway.log_count()
        poller = HealthzPoller(port)
    reset_peak(pid)
    rss_before = status_bytes(pid, "VmRSS")
    machine, own = procs.machine_busy_s(), procs.tree_cpu_s(os.getpid())
    before = procs.sample(pid)
    started = time.monotonic()
    try:
        key = gateway.key if gateway is not None else None
        results = asyncio.run(_streams(port, key, count, tokens))
    finally:
        if poller is not None:
            run.healthz = Polled.of(*poller.stop())
    run.seconds = time.monotonic() - started
    if gateway is not None:
        run.log_lag_s = gateway.wait_for_log(count, logged)
    run.cpu_s = procs.cpu_used(before, procs.sample(pid))
    other = (procs.machine_busy_s() - machine) - (procs.tree_cpu_s(os.getpid()) - own)
    run.other_load_cores = max(other, 0.0) / (time.monotonic() - started)
    run.peak_rss_growth_mb = (status_bytes(pid, "VmHWM") - rss_before) / MIB
    run.events_relayed = sum(events for events, _, _ in results)
    run.bytes_relayed = sum(size for _, size, _ in results)
    run.completed = sum(ok for _, _, ok in results)
    run.cpu_us_per_event = run.cpu_s / run.events_expected * 1e6
    return run


# -- 2 GiB answers --------------------------------------------------------------------------


@dataclass
class HugeRun:
    case: str
    cap_bytes: int
    size_bytes: int
    status: int = 0
    answer: str = ""  # the error message the client got
    seconds_to_status: float = 0.0
    seconds_to_end: float = 0.0
    attempts: int = 0  # hostile answers the upstream started for this call
    upstream_sent_bytes: int = 0  # over every attempt
    upstream_sent_each: list[int] = field(default_factory=list)
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    peak_growth_mb: float = 0.0
    bar_mb: float = 0.0

    @property
    def refused(self) -> bool:
        """A 502 with the gateway's message, or, once a stream has begun, its error event."""
        statuses = (502,) if self.case == "huge-body" else (200, 502)
        return self.status in statuses and "larger than" in self.answer

    @property
    def holds(self) -> bool:
        return self.refused and self.peak_growth_mb <= self.bar_mb


def huge_answer(gateway: Gateway, upstream_url: str, case: str, cap: int, size: int) -> HugeRun:
    run = HugeRun(case, cap, size, bar_mb=(cap + RSS_SLACK) / MIB)
    stream = case == "huge-event"
    body: dict[str, Any] = {**stream_request(), "stream": stream, "bench_answer": case}
    body["bench_bytes"] = size
    if not stream:
        body.pop("stream_options")
    earlier = len(_sent(upstream_url))
    reset_peak(gateway.pid)
    rss_before = status_bytes(gateway.pid, "VmRSS")
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=300)
    started = time.monotonic()
    try:
        connection.request(
            "POST", PATH, json.dumps(body),
            {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.key}"},
        )  # fmt: skip
        response = connection.getresponse()
        run.status = response.status
        run.seconds_to_status = time.monotonic() - started
        raw = response.read()
        run.seconds_to_end = time.monotonic() - started
    finally:
        connection.close()
    run.answer = _error_message(raw)
    attempts = _wait_closed(upstream_url, earlier)
    run.attempts = len(attempts)
    run.upstream_sent_each = [int(a["sent_bytes"]) for a in attempts]
    run.upstream_sent_bytes = sum(run.upstream_sent_each)
    peak = status_bytes(gateway.pid, "VmHWM")
    run.rss_before_mb, run.peak_rss_mb = rss_before / MIB, peak / MIB
    run.peak_growth_mb = (peak - rss_before) / MIB
    return run


def _error_message(raw: bytes) -> str:
    """The message of the error object in a JSON body or in a stream's last events."""
    for candidate in [
        raw,
        *reversed([e[5:].strip() for e in raw.split(b"\n") if e[:5] == b"data:"]),
    ]:
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return str(parsed["error"].get("message", ""))
    return ""


def _sent(upstream_url: str) -> list[dict[str, Any]]:
    host, port = upstream_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/bench/sent")
        listing: list[dict[str, Any]] = json.loads(connection.getresponse().read())
        return listing
    finally:
        connection.close()


def _wait_closed(upstream_url: str, earlier: int, patience_s: float = 60.0) -> list[dict[str, Any]]:
    """The hostile answers started since ``earlier``, once the gateway closed each one."""
    deadline = time.monotonic() + patience_s
    while True:
        new = _sent(upstream_url)[earlier:]
        if all(a["closed"] or a["finished"] for a in new) or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


# -- /proc ------------------------------------------------------------------------------------


def reset_peak(pid: int) -> None:
    """Start VmHWM afresh from the RSS now (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def status_bytes(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


# -- the run ----------------------------------------------------------------------------------


def _yes(holds: bool) -> str:
    return "yes" if holds else "**no**"


def table(streams: StreamRun, floor: StreamRun | None, huge: list[HugeRun]) -> str:
    s = streams
    polled, idle = s.healthz or Polled(), s.healthz_idle or Polled()
    ratio = f", {s.cpu_us_per_event / floor.cpu_us_per_event:.1f} × the bare relay" if floor else ""
    lines = [
        "| Case | Figure | Bar | Measured | Holds |",
        "|---|---|---|---|---|",
        f"| {s.streams} streams × {s.tokens:,} tokens | /healthz p50 / p99 (max) "
        f"| p99 ≤ {HEALTHZ_P99_BAR_MS:.0f} ms | {polled.p50_ms:.2f} / {polled.p99_ms:.2f} "
        f"({polled.max_ms:.1f}) ms over {polled.polls:,} polls, {polled.failures} failed "
        f"(idle, before: {idle.p50_ms:.2f} / {idle.p99_ms:.2f}) "
        f"| {_yes(polled.p99_ms <= HEALTHZ_P99_BAR_MS and not polled.failures)} |",
        f"| | gateway CPU per stream event | — | {s.cpu_us_per_event:.1f} µs{ratio} "
        f"({s.cpu_s:.1f} s for {s.events_expected:,} events, {s.seconds:.1f} s wall) | |",
        f"| | streams ended with [DONE] | all | {s.completed} of {s.streams}, "
        f"{s.events_relayed:,} events, {s.bytes_relayed / MIB:,.0f} MiB relayed "
        f"| {_yes(s.completed == s.streams)} |",
        f"| | gateway peak RSS growth | — | {s.peak_rss_growth_mb:.1f} MiB | |",
    ]
    if floor is not None:
        lines.append(
            f"| the same streams through the bare relay | CPU per stream event | — "
            f"| {floor.cpu_us_per_event:.1f} µs ({floor.cpu_s:.1f} s, {floor.seconds:.1f} s wall, "
            f"{floor.completed} of {floor.streams} ended with [DONE]) | |"
        )
    for h in huge:
        each = ", ".join(f"{b / MIB:,.1f}" for b in h.upstream_sent_each)
        grown = _yes(h.peak_growth_mb <= h.bar_mb)
        what = "non-stream answer" if h.case == "huge-body" else "single stream event"
        lines += [
            f"| {h.size_bytes / GIB:g} GiB {what}, cap {h.cap_bytes / MIB:g} MiB "
            f"| what the client got | 502 (stream: an error event), quickly "
            f"| {h.status}{' + error event' if h.case == 'huge-event' else ''} after "
            f"{h.seconds_to_end:.2f} s: “{h.answer}” | {_yes(h.refused)} |",
            f"| | peak RSS growth (VmHWM) | ≤ {h.bar_mb:.0f} MiB | {h.peak_growth_mb:.1f} MiB "
            f"({h.rss_before_mb:.0f} → {h.peak_rss_mb:.0f}) | {grown} |",
            f"| | upstream wrote | — | {h.upstream_sent_bytes / MIB:,.1f} MiB over "
            f"{h.attempts} attempt(s) ({each}) "
            "| |",
        ]
    return "\n".join(lines)


@contextmanager
def serving(
    upstream_url: str, args: argparse.Namespace, logs: list[dict[str, int]]
) -> Iterator[Gateway]:
    """A fresh gateway: one case's memory must not be another's freed heap."""
    env = dict(item.split("=", 1) for item in args.env)
    gateway = Gateway(Mode("SQLite, 1 process"), upstream_url + "/v1", upstream_url + "/v1",
                      env, args.keep)  # fmt: skip
    try:
        gateway.start()
        yield gateway
    finally:
        logs.append(gateway.stop())


def run(args: argparse.Namespace) -> int:

    env = dict(item.split("=", 1) for item in args.env)
    body_cap = int(env.get("OMNIRELAY_MAX_UPSTREAM_BODY_BYTES", DEFAULT_BODY_CAP))
    event_cap = int(env.get("OMNIRELAY_MAX_UPSTREAM_EVENT_BYTES", DEFAULT_EVENT_CAP))
    size = int(args.huge_gib * GIB)
    report: dict[str, Any] = {"args": vars(args), "load_average_before": os.getloadavg()}
    logs: list[dict[str, int]] = []
    report["log_rows"] = logs
    upstream = Upstream(0.0, 0.0)
    floor = None
    try:
        print("-- hostile upstreams, each case on a fresh gateway (SQLite, 1 process)", flush=True)
        print(f"-- {args.streams} streams of {args.tokens:,} tokens, /healthz polled", flush=True)
        with serving(upstream.url, args, logs) as gateway:
            streams = runaway_streams(
                "gateway", gateway.port, gateway.pid, args.streams, args.tokens, gateway
            )
        report["load_average_after_streams"] = os.getloadavg()
        if not args.no_bare:
            print("-- the same streams through the bare relay", flush=True)
            floor = bare_streams(upstream.url, args.streams, args.tokens)
        huge = []
        for case, cap in (("huge-body", body_cap), ("huge-event", event_cap)):
            print(f"-- {case}: {size / GIB:g} GiB against a {cap / MIB:g} MiB cap", flush=True)
            with serving(upstream.url, args, logs) as gateway:
                huge.append(huge_answer(gateway, upstream.url, case, cap, size))
    finally:
        upstream.stop()
    report["load_average_after"] = os.getloadavg()
    report["streams"] = asdict(streams)
    report["bare_relay_streams"] = asdict(floor) if floor else None
    report["huge"] = [asdict(h) for h in huge]
    text = table(streams, floor, huge)
    loads = " / ".join(
        f"{report[k][0]:.2f}"
        for k in ("load_average_before", "load_average_after_streams", "load_average_after")
    )
    text += (
        f"\n\nLoad average (1 min) before / after the gateway's streams / at the end: {loads}; "
        f"other processes' load during the gateway's streams: {streams.other_load_cores:.2f} "
        "cores (of 2)."
    )
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "hostile.md").write_text(text + "\n")
    print(f"\nwritten: {RESULTS / 'hostile.md'} and hostile.json")
    healthy = streams.healthz is not None and streams.healthz.p99_ms <= HEALTHZ_P99_BAR_MS
    return 0 if healthy and all(h.holds for h in huge) else 1


def bare_streams(upstream_url: str, count: int, tokens: int) -> StreamRun:
    from bench.bare_relay import BareRelay
    from bench.gateway import free_port, http
    from bench.seed import SEED_REQUEST

    relay = BareRelay(upstream_url, upstream_url, free_port())
    try:
        relay.wait_ready(lambda url: http("POST", url + PATH, SEED_REQUEST)[0] == 200)
        return runaway_streams("bare relay", relay.port, relay.pid, count, tokens)
    finally:
        relay.stop()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the gateway (repeatable)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the gateway's folder")
    parser.add_argument("--no-bare", action="store_true", help="leave out the bare relay")
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This run's own options (``python -m bench`` has ``--env`` and ``--keep`` too)."""
    parser.add_argument("--streams", type=int, default=20, help="hostile: concurrent streams")
    parser.add_argument("--tokens", type=int, default=100_000,
                        help="hostile: content chunks per stream")  # fmt: skip
    parser.add_argument("--huge-gib", type=float, default=2.0,
                        help="hostile: the huge answers' size")  # fmt: skip


def main() -> int:
    return run(parser().parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
