"""``omnirelay db copy``: a SQLite gateway with traffic, copied into PostgreSQL.

A gateway started on the copy serves the same keys with the same balances, and goes on
from there (new ids, new charges). A non-empty target is refused.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from omnirelay.store.tables import metadata
from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway
from support.postgres import fresh_database


def _chat(server: Gateway, key: str, **extra: Any) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "max_tokens": 5,
            "messages": [{"role": "user", "content": "count to three"}], **extra}  # fmt: skip
    return httpx.post(server.base_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip


def _balances(server: Gateway, key_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """Per key: the ledger's total, the key's spend, and the number of entries."""
    out = {}
    for key_id in key_ids:
        book = server.admin("GET", f"/admin/ledger?key_id={key_id}").json()
        out[key_id] = (book["total_nano"], book["key_used_nano"], len(book["entries"]))
    return out


def _sqlite_counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as database:
        return {
            table.name: database.execute(f'SELECT COUNT(*) FROM "{table.name}"').fetchone()[0]
            for table in metadata.sorted_tables
        }


def test_a_gateway_on_the_copy_serves_the_same_keys_with_the_same_balances(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    source = Gateway(tmp_path / "sqlite")
    source.start()
    source.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o-mini"], headers={"X-Team": "blue"})  # fmt: skip
    source.cli("price", "set", "gpt-4o-mini", "--input", "1", "--output", "10")
    limited = source.create_key(name="limited", quota_usd="5")
    other = source.create_key(name="other")
    for key in (limited, other):
        for _ in range(3):
            assert _chat(source, key["key"]).status_code == 200
        assert _chat(source, key["key"], stream=True).status_code == 200
    stored = httpx.post(
        source.base_url + "/responses",
        json={"model": "gpt-4o-mini", "input": "hello", "store": True},
        headers={"Authorization": f"Bearer {other['key']}"},
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
    ids = [limited["id"], other["id"]]
    before = _balances(source, ids)
    assert all(total > 0 and total == used for total, used, _ in before.values())
    source.stop()
    counts = _sqlite_counts(source.workdir / "data" / "omnirelay.db")
    busy = ("keys", "channels", "ledger", "request_logs", "usage_daily", "responses",
            "response_items")  # fmt: skip
    assert all(counts[name] > 0 for name in busy)

    with fresh_database() as url:
        copied = source.cli("db", "copy", "--to", url)
        for name, rows in counts.items():
            assert f"  {name}: {rows} rows" in copied.stdout, copied.stdout
        assert "verified" in copied.stdout

        again = source.cli("db", "copy", "--to", url, check=False)
        assert again.returncode != 0
        assert "not empty" in again.stderr + again.stdout

        secret = (source.workdir / "data" / "secret.key").read_text().strip()
        target = Gateway(
            tmp_path / "postgres",
            env={"OMNIRELAY_DATABASE_URL": url, "OMNIRELAY_SECRET_KEY": secret},
        )
        target.start()
        try:
            assert _balances(target, ids) == before
            subscription = httpx.get(
                target.base_url + "/dashboard/billing/subscription",
                headers={"Authorization": f"Bearer {limited['key']}"},
                timeout=10,
            )
            assert subscription.status_code == 200
            assert subscription.json()["hard_limit_usd"] == 5
            # The same keys, the same channel (its upstream key and headers decrypted), and
            # new charges on top with new ids.
            response = _chat(target, limited["key"])
            assert response.status_code == 200, response.text
            assert fake.received[-1].headers["x-team"] == "blue"
            after = _balances(target, ids)
            total, used, entries = after[limited["id"]]
            assert entries == before[limited["id"]][2] + 1
            assert total == used > before[limited["id"]][0]
            retrieved = httpx.get(target.base_url + f"/responses/{stored.json()['id']}",
                                  headers={"Authorization": f"Bearer {other['key']}"},
                                  timeout=10)  # fmt: skip
            assert retrieved.status_code == 200
        finally:
            target.stop()
