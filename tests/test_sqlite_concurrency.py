"""The CLI and the server write to the same SQLite file at the same moment, and neither fails.

A deferred SQLite transaction that reads and then writes can fail with "database is
locked" without waiting for the busy timeout; every transaction here starts IMMEDIATE.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway

CALLS = 120
CLI_RUNS = 8


@pytest.fixture
def busy_gateway(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Gateway]:
    # Flush the log every 10 ms so the server is writing nearly all the time.
    server = Gateway(tmp_path, env={"OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.01"})
    server.start()
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=["gpt-4o"])
    yield server
    server.stop()


def test_cli_and_server_write_at_once(busy_gateway: Gateway) -> None:
    key_info = busy_gateway.create_key(name="load")
    headers = {"Authorization": f"Bearer {key_info['key']}"}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

    def call(_: int) -> int:
        url = busy_gateway.base_url + "/chat/completions"
        return httpx.post(url, headers=headers, json=body, timeout=30).status_code

    def cli(index: int) -> subprocess.CompletedProcess[str]:
        command = (
            ["key", "create", "--name", f"cli-{index}"]
            if index % 2
            else ["price", "set", f"model-{index}", "--input", "1", "--output", "2"]
        )
        return busy_gateway.cli(*command, check=False)

    with ThreadPoolExecutor(max_workers=16) as pool:
        calls = [pool.submit(call, i) for i in range(CALLS)]
        clis = [pool.submit(cli, i) for i in range(CLI_RUNS)]
        statuses = [f.result() for f in calls]
        results = [f.result() for f in clis]

    assert statuses == [200] * CALLS
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "locked" not in result.stderr
    logged = busy_gateway.admin("GET", f"/admin/logs?key_id={key_info['id']}&limit=1000").json()
    assert len(logged["data"]) == CALLS
    spent = sum(row["cost_nano"] for row in logged["data"])
    assert busy_gateway.admin("GET", f"/admin/keys/{key_info['id']}").json()["used_nano"] == spent
    keys = busy_gateway.admin("GET", "/admin/keys").json()["data"]
    assert len([k for k in keys if k["name"].startswith("cli-")]) == CLI_RUNS // 2
    assert "locked" not in busy_gateway.stop()


async def test_read_then_write_transactions_never_see_locked(tmp_path: Path) -> None:
    """Two engines (two processes' pools) run read-then-write transactions at once.

    With a deferred BEGIN, the read takes a snapshot and the later write fails at once
    with SQLITE_BUSY whenever the other engine committed in between; busy_timeout does not
    help there. BEGIN IMMEDIATE makes the second writer wait its turn instead.
    """
    import asyncio

    from sqlalchemy import func, insert, select

    from omnirelay.store.db import create_engine, migrate
    from omnirelay.store.tables import settings_kv

    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    engines = [create_engine(url), create_engine(url)]
    await migrate(engines[0])

    async def read_then_write(engine_index: int, n: int) -> None:
        async with engines[engine_index].begin() as connection:
            count = await connection.scalar(select(func.count()).select_from(settings_kv))
            await asyncio.sleep(0.001)  # the other engine may commit in between: the race
            await connection.execute(
                insert(settings_kv).values(name=f"e{engine_index}-{n}", value=str(count))
            )

    try:
        await asyncio.gather(*(read_then_write(i % 2, i) for i in range(200)))
        async with engines[0].connect() as connection:
            total = await connection.scalar(select(func.count()).select_from(settings_kv))
        assert total == 200
    finally:
        for engine in engines:
            await engine.dispose()
