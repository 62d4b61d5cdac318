"""The task poller's cost per tick: it must follow the due tasks, not the active ones.

Fills a fresh database with ACTIVE open tasks, of which DUE are due a poll, and runs the
real poller (``gateway.tasks.poller.Poller.tick``: claim with a lease, poll each task over
HTTP, write its new state) against an upstream in another process that answers every
poll "in progress". Each round makes DUE other tasks due, and measures one tick: this
process's CPU time (``time.process_time``) and the SQL statements it sent. Run on its own:

    python -m bench.tasks [--database-url URL] [--rounds 5]

It prints one row per (active, due) pair; docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography.fernet import Fernet
from sqlalchemy import delete, event, insert, select, update

from omnirelay.config import Settings
from omnirelay.gateway.charges import Settlement
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.routing import Router
from omnirelay.gateway.tasks.closer import Closer
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.poller import Poller
from omnirelay.gateway.tasks.results import ResultStore
from omnirelay.providers.http import Timeouts, UpstreamClient
from omnirelay.providers.tasks.registry import OPENAI_VIDEO, TaskDialects
from omnirelay.store.blobs import BlobStore
from omnirelay.store.counters import MemoryCounters
from omnirelay.store.store import Store
from omnirelay.store.tables import tasks

PAIRS = ((1_000, 100), (10_000, 100), (10_000, 10))
HOUR_MS = 3_600_000


async def _in_progress(request: web.Request) -> web.Response:
    video = {
        "id": request.match_info["id"], "object": "video", "model": "sora-2",
        "status": "in_progress", "progress": 50, "created_at": 1_700_000_000,
        "completed_at": None, "expires_at": None, "prompt": "bench", "size": "720x1280",
        "seconds": "4", "remixed_from_video_id": None, "error": None,
    }  # fmt: skip
    return web.Response(body=orjson.dumps(video), content_type="application/json")


def serve_upstream(port: int) -> None:
    app = web.Application()
    app.router.add_get("/v1/videos/{id}", _in_progress)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _fill(store: Store, key_id: int, channel_id: int, count: int) -> None:
    """``count`` open tasks, none due."""
    now = int(time.time() * 1000)
    rows = [
        {
            "public_id": "video_" + secrets.token_hex(12),
            "key_id": key_id, "family": OPENAI_VIDEO, "action": "create", "model": "sora-2",
            "channel_id": channel_id, "upstream_id": f"video_up_{n}", "state": "running",
            "upstream_status": "in_progress", "progress": 50, "request": {"params": {}},
            "hold_nano": 400_000_000, "request_id": f"req_bench_{n}", "version": 0,
            "next_poll_ms": now + HOUR_MS + n, "deadline_ms": now + 10 * HOUR_MS,
            "created_ms": now, "updated_ms": now,
        }
        for n in range(count)
    ]  # fmt: skip
    async with store.engine.begin() as connection:
        for start in range(0, count, 1000):
            await connection.execute(insert(tasks), rows[start : start + 1000])


async def _make_due(store: Store, ids: list[int], now_ms: int) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(
            update(tasks)
            .where(tasks.c.id.in_(ids))
            .values(next_poll_ms=now_ms - 1, progress=10, unchanged_polls=0)
        )


SECRET_KEY = Fernet.generate_key().decode()  # one for every run on a given database


async def measure(
    database_url: str, active: int, due: int, rounds: int, upstream: str
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder), database_url=database_url,
            secret_key=SECRET_KEY,
        )  # fmt: skip
        store = await Store.open(settings)
        statements = 0

        def count(*_args: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(store.engine.sync_engine, "before_cursor_execute", count)
        try:
            async with store.engine.begin() as connection:
                await connection.execute(delete(tasks))  # a database given for several runs
            key, _ = await store.keys.create(name="bench")
            channel = await store.channels.create(
                name="sora-" + secrets.token_hex(4), type="openai", base_url=upstream,
                api_key="sk-bench", models=["sora-2"],
            )  # fmt: skip
            await _fill(store, key.id, channel.id, active)
            async with store.engine.connect() as connection:
                ids = list(await connection.scalars(select(tasks.c.id)))
            timeouts = Timeouts(connect_s=5, first_byte_s=30, idle_s=30, total_s=30)
            router = Router(timeouts)
            router.replace(await store.channels.list_all())
            client = UpstreamClient()
            await client.start()
            writer = LogWriter(store.logs, KeyCache(), interval_s=60)
            settlement = Settlement(Meter(MemoryCounters(), writer, store.ledger), writer)
            limits = TaskLimits(poll_batch=max(due, 1), channel_polls=64)
            family = Family(OPENAI_VIDEO, "video_", "videos", lambda task: {})
            closer = Closer(store.tasks, settlement, {OPENAI_VIDEO: family})
            results = ResultStore(BlobStore(Path(folder) / "blobs"), store.tasks, limits)
            poller = Poller(store.tasks, router, TaskDialects(), client, closer, results, limits)
            cpu_ms: list[float] = []
            per_tick: list[int] = []
            claimed: list[int] = []
            for _ in range(rounds + 1):  # the first round warms caches up
                now_ms = int(time.time() * 1000)
                await _make_due(store, random.sample(ids, due), now_ms)
                statements = 0
                started = time.process_time()
                claimed.append(await poller.tick(now_ms))
                cpu_ms.append((time.process_time() - started) * 1000)
                per_tick.append(statements)
            await client.close()
        finally:
            await store.close()
    return {
        "active": active,
        "due": due,
        "claimed_per_tick": statistics.median(claimed[1:]),
        "statements_per_tick": statistics.median(per_tick[1:]),
        "cpu_ms_per_tick": round(statistics.median(cpu_ms[1:]), 1),
        "cpu_ms_per_due_task": round(statistics.median(cpu_ms[1:]) / max(due, 1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.tasks", "--serve-upstream", str(port)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        time.sleep(1.5)
        base = f"http://127.0.0.1:{port}/v1"
        rows = [
            asyncio.run(measure(args.database_url, active, due, args.rounds, base))
            for active, due in PAIRS
        ]
    finally:
        upstream.terminate()
        upstream.wait()
    names = list(rows[0])
    print(" | ".join(names))
    for row in rows:
        print(" | ".join(str(row[name]) for name in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
