"""Start ``omnirelay serve`` in one benchmark mode, with every feature on.

Every feature: two weighted channels on the fake upstream (routing and the attempt loop),
and a third on a fake upstream that answers after a delay, for the latency runs;
a key with a quota, a monthly budget, RPM/TPM/concurrency limits, a model allowlist, an
expiry and an IP allowlist (auth and limits, set high enough never to refuse), hold/settle
metering, and each call's log row written to the database by the batched writer.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_KEY = "sk-admin-bench-" + "0" * 32
UPSTREAM_KEY = "sk-upstream-bench"
MODEL = "gpt-4o"
SLOW_MODEL = "gpt-4o-mini"  # served by the upstream that takes its time (latency runs)
WORKER_HEADER = "x-omnirelay-worker"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Mode:
    name: str
    workers: int = 1
    postgres: bool = False
    redis: bool = False
    strict: bool = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, key: str | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, dict(error.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return status, {k.lower(): v for k, v in headers.items()}, parsed


class Gateway:
    def __init__(
        self,
        mode: Mode,
        upstream_url: str,
        slow_upstream_url: str,
        env: dict[str, str] | None = None,
        keep: bool = False,
    ) -> None:
        self.keep = keep  # leave the data folder and gateway.log behind, for a post-mortem
        self.mode = mode
        self.upstream_url = upstream_url
        self.slow_upstream_url = slow_upstream_url
        self.extra_env = env or {}
        self.port = free_port()
        slug = "".join(c if c.isalnum() else "-" for c in mode.name.lower())
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{slug}-"))
        self.database: str | None = None
        self.redis_prefix: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "OMNIRELAY_HOST": "127.0.0.1",
            "OMNIRELAY_PORT": str(self.port),
            "OMNIRELAY_DATA_DIR": str(self.workdir / "data"),
            "OMNIRELAY_ADMIN_KEY": ADMIN_KEY,
            "OMNIRELAY_LOG_LEVEL": "warning",
            "OMNIRELAY_STRICT_SETTLEMENT": "true" if self.mode.strict else "false",
        }
        env.pop("OMNIRELAY_CONFIG", None)
        env.update(self.extra_env)
        if self.mode.postgres:
            self.database = "omnirelay_bench_" + secrets.token_hex(6)
            asyncio.run(_pg(f'CREATE DATABASE "{self.database}"'))
            env["OMNIRELAY_DATABASE_URL"] = (
                f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}"
            )
        if self.mode.redis:
            self.redis_prefix = "bench-" + secrets.token_hex(6)
            env["OMNIRELAY_REDIS_URL"] = REDIS_URL
            env["OMNIRELAY_REDIS_PREFIX"] = self.redis_prefix
        return env

    def start(self) -> None:
        command = [str(BIN / "omnirelay"), "serve", "--workers", str(self.mode.workers)]
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self._env(),
            stdout=open(self.workdir / "gateway.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.output()}")
            try:
                if http("GET", self.url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.output()}")
            time.sleep(0.1)
        self._configure()

    def _configure(self) -> None:
        channels = (
            ("bench-a", 3, self.upstream_url, MODEL),
            ("bench-b", 1, self.upstream_url, MODEL),
            ("bench-slow", 1, self.slow_upstream_url, SLOW_MODEL),
        )
        for name, weight, base_url, model in channels:
            status, _, body = http(
                "POST",
                self.url + "/admin/channels",
                {"name": name, "type": "openai", "base_url": base_url, "api_key": UPSTREAM_KEY,
                 "models": [model], "priority": 1, "weight": weight},
                ADMIN_KEY,
            )  # fmt: skip
            assert status == 201, body
        status, _, body = http(
            "POST",
            self.url + "/admin/keys",
            {
                "name": "bench",
                "quota_usd": "1000000",
                "expires": "2099-12-31",
                "models": [MODEL, SLOW_MODEL],
                "limits": {
                    "budget_usd": "1000000",
                    "budget_period": "month",
                    "rpm": 100_000_000,
                    "tpm": 2_000_000_000,  # the column is a 32-bit integer on PostgreSQL
                    "max_concurrency": 10_000,
                    "allowed_ips": ["127.0.0.0/8"],
                },
            },
            ADMIN_KEY,
        )
        assert status == 201, body
        self.key = body["key"]
        self._wait_until_served()

    def _wait_until_served(self) -> None:
        """Every worker knows the key and has loaded the tokenizer (o200k, for gpt-4o)."""
        count = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        loaded: set[str] = set()
        deadline = time.monotonic() + 30
        while len(loaded) < self.mode.workers:
            status, headers, _ = http(
                "POST", self.url + "/v1/messages/count_tokens", count, self.key
            )
            if status == 200:
                loaded.add(headers.get(WORKER_HEADER, "single"))
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(loaded)} workers answered: {self.output()}")
            time.sleep(0.02)

    def output(self) -> str:
        try:
            return (self.workdir / "gateway.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> dict[str, int]:
        """Stop gracefully (the last batch is flushed); returns the log rows by status."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        rows = self.log_rows()
        if self.database:
            asyncio.run(_pg_drop(self.database))
        if self.redis_prefix:
            _redis_cleanup(self.redis_prefix)
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            print(f"   kept {self.workdir} (gateway.log, data/)", flush=True)
        return rows

    def wait_for_log(self, calls: int, before: int, patience_s: float = 180.0) -> float:
        """Wait until the log holds a row for each call; returns the seconds it took.

        The batched writer commits after the calls; its work is part of each call's cost,
        so CPU is read once it has caught up.
        """
        started = time.monotonic()
        while time.monotonic() - started < patience_s:
            if self.log_count() >= before + calls:
                break
            time.sleep(0.1)
        return time.monotonic() - started

    def log_count(self) -> int:
        return sum(self.log_rows().values())

    def log_rows(self) -> dict[str, int]:
        query = "SELECT status, count(*) FROM request_logs GROUP BY status"
        if self.database:
            return {str(s): int(n) for s, n in asyncio.run(_pg_rows(self.database, query))}
        db = self.workdir / "data" / "omnirelay.db"
        with sqlite3.connect(db) as connection:
            return {str(s): int(n) for s, n in connection.execute(query)}


async def _pg(statement: str, database: str = "postgres") -> None:
    import asyncpg

    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _pg_rows(database: str, query: str) -> list[tuple[Any, ...]]:
    import asyncpg

    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        return [tuple(row) for row in await connection.fetch(query)]
    finally:
        await connection.close()


async def _pg_drop(database: str) -> None:
    await _pg(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    await _pg(f'DROP DATABASE IF EXISTS "{database}"')


def _redis_cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + ":*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
