"""A gateway killed with SIGKILL mid-stream: after a restart, the ledger still balances.

Calls that finished at least a second before the kill are charged exactly; streams that
were in flight are settled from their last checkpoint by the reconciler.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until

ENV = {
    "OMNIRELAY_HOLD_LEASE_S": "1",
    "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.2",
}
LONG_PROMPT = " ".join(f"w{i}" for i in range(40))


def _stream_in_background(server: Gateway, key: str, seen: list[str]) -> threading.Thread:
    def run() -> None:
        try:
            with httpx.stream(
                "POST",
                server.base_url + "/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "gpt-4o", "stream": True,
                      "messages": [{"role": "user", "content": LONG_PROMPT}]},
                timeout=30,
            ) as response:  # fmt: skip
                seen.append(response.headers["x-request-id"])
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass  # the gateway was killed under us

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _call(server: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
        timeout=10,
    )


def _committed(server: Gateway, query: str, request_ids: set[str] | list[str]) -> int:
    """How many of ``request_ids`` match ``query`` in the database, as committed so far.

    Read straight from the file: the admin API would flush the gateway's pending batch,
    and what is on disk without that push is the point here.
    """
    marks = ", ".join("?" * len(request_ids))
    database = server.workdir / "data" / "omnirelay.db"
    with closing(sqlite3.connect(database, timeout=30)) as connection:
        row = connection.execute(query.format(ids=marks), list(request_ids)).fetchone()
    return int(row[0])


def test_sigkill_mid_stream_settles_from_checkpoints(tmp_path: Path, fake: FakeOpenAI) -> None:
    server = Gateway(tmp_path, env=ENV)
    server.start()
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=["gpt-4o"])
    created = server.create_key(name="crash")
    key, key_id = created["key"], created["id"]

    early = [_call(server, key) for _ in range(5)]
    assert all(r.status_code == 200 for r in early)
    early_ids = {r.headers["x-request-id"] for r in early}
    early_costs = {r.headers["x-request-id"]: _cost_of(r.json()) for r in early}
    charged = "SELECT COUNT(*) FROM ledger WHERE kind = 'charge' AND request_id IN ({ids})"
    # These are charged on disk well before the kill.
    wait_until(lambda: _committed(server, charged, early_ids) == len(early_ids), timeout=10)

    fake.stream_delay = 0.25
    streaming: list[str] = []
    threads = [_stream_in_background(server, key, streaming) for _ in range(3)]
    wait_until(lambda: len(streaming) == 3, timeout=5)
    checkpointed = "SELECT COUNT(*) FROM holds WHERE checkpoint_nano > 0 AND request_id IN ({ids})"
    # Each stream has had a checkpoint taken and flushed.
    wait_until(lambda: _committed(server, checkpointed, streaming) == 3, timeout=10)
    late = [_call(server, key) for _ in range(3)]  # finished just before the kill
    server.kill()
    for thread in threads:
        thread.join(timeout=5)

    server.start()  # the reconciler settles the expired holds
    try:

        def settled() -> bool:
            return not server.admin("GET", f"/admin/ledger?key_id={key_id}").json()["open_holds"]

        wait_until(settled, timeout=5)
        book = server.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    finally:
        server.stop()

    entries = {entry["request_id"]: entry for entry in book["entries"]}
    for request_id in early_ids:
        assert entries[request_id]["kind"] == "charge"
        assert entries[request_id]["amount_nano"] == early_costs[request_id]
    for request_id in streaming:
        entry = entries[request_id]
        assert entry["kind"] == "expired"
        assert entry["amount_nano"] > 0, "an in-flight stream was not charged its checkpoint"
    assert book["total_nano"] == book["key_used_nano"], "the ledger does not balance"
    late_ids = {r.headers["x-request-id"] for r in late}
    lost = len(late_ids - set(entries))
    print(f"\nsettlements from the last second lost to SIGKILL: {lost} of {len(late_ids)}")


def _cost_of(body: dict[str, Any]) -> int:
    usage = body["usage"]  # gpt-4o: $2.50 in and $10.00 out per 1M tokens
    return int(usage["prompt_tokens"] * 2_500 + usage["completion_tokens"] * 10_000)
