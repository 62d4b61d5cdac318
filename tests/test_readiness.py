"""``GET /readyz`` through the real gateway when something it needs fails: the database
cannot be reached, its schema is not at this version's revision, Redis does not answer.
Each answers 503 naming the failing check, and 200 again once it is fixed.
(All checks passing, draining and a stalled log writer: tests/test_lifecycle.py and
tests/test_alerts.py.)
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from omnirelay.store.db import HEAD_REVISION
from support import processes
from support.constants import CLIENT_TIMEOUT_S, SHARED_FERNET_KEY
from support.gateway import Gateway, free_port, wait_until
from support.postgres import CONNECT_TIMEOUT_S, HOST, PORT, USER, fresh_database

SCHEMA_BEHIND = "schema not at this version's revision"


def _ready(gateway: Gateway) -> httpx.Response:
    return httpx.get(gateway.url + "/readyz", timeout=CLIENT_TIMEOUT_S)


def _failing(gateway: Gateway, check: str, verdict: str) -> dict[str, Any]:
    """Wait until /readyz answers 503 with ``check`` failing as ``verdict``; its body."""
    seen: dict[str, Any] = {}

    def failing() -> bool:
        response = _ready(gateway)
        seen.update(status=response.status_code, body=response.json())
        return response.status_code == 503 and response.json()["checks"][check] == verdict

    wait_until(failing, timeout=15, interval=0.2)
    body: dict[str, Any] = seen["body"]
    assert body["status"] == "not ready"
    assert [name for name, said in body["checks"].items() if said != "ok"] == [check]
    return body


def _recovers(gateway: Gateway) -> None:
    wait_until(lambda: _ready(gateway).status_code == 200, timeout=15, interval=0.2)
    assert _ready(gateway).json()["status"] == "ready"


def _sql(database: str, *statements: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(
            host=HOST, port=PORT, user=USER, database=database, timeout=CONNECT_TIMEOUT_S
        )
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    """A gateway on a database of its own, and that database's name."""
    with fresh_database() as url:
        env = {"OMNIRELAY_DATABASE_URL": url, "OMNIRELAY_SECRET_KEY": SHARED_FERNET_KEY}
        server = Gateway(tmp_path_factory.mktemp("ready-pg"), env=env)
        server.start()
        try:
            yield server, url.rsplit("/", 1)[1]
        finally:
            server.stop()


def test_an_unreachable_database_is_not_ready_until_it_answers_again(
    on_postgres: tuple[Gateway, str],
) -> None:
    server, name = on_postgres
    assert _ready(server).status_code == 200
    # No new connection is let in, and the gateway's open ones are cut.
    _sql(
        "postgres",
        f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )
    try:
        _failing(server, "database", "unreachable")
    finally:
        _sql("postgres", f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    _recovers(server)
    assert server.process is not None and server.process.poll() is None  # it kept serving


def test_a_schema_behind_this_version_is_not_ready_until_migrated(
    on_postgres: tuple[Gateway, str],
) -> None:
    server, name = on_postgres
    assert _ready(server).status_code == 200
    # As if an older version's node had rolled the schema back under this one.
    _sql(name, "UPDATE alembic_version SET version_num = '0001'")
    try:
        _failing(server, "database", SCHEMA_BEHIND)
    finally:
        _sql(name, f"UPDATE alembic_version SET version_num = '{HEAD_REVISION}'")
    _recovers(server)


class RedisServer:
    """A redis-server of this test's own on a free port, to stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.process = processes.spawn(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=10, interval=0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=10)
            self.process = None


def test_redis_down_is_not_ready_until_it_answers_again(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    server = Gateway(tmp_path / "gateway", env={"OMNIRELAY_REDIS_URL": redis.url})
    server.workdir.mkdir()
    try:
        server.start()
        ready = _ready(server)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["redis"] == "ok"
        redis.stop()
        _failing(server, "redis", "unreachable")
        redis.start()  # on the same port
        _recovers(server)
        assert _ready(server).json()["checks"]["redis"] == "ok"
    finally:
        server.stop()
        redis.stop()
