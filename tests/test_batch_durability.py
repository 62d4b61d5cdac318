"""Batches survive what processes go through: a SIGKILL mid-batch and a restart (every
custom_id answered exactly once, one charge per successful line, the books balance), two
processes on PostgreSQL sharing one batch without running a line twice, and a batch whose
completion window ends (its unfinished lines answer ``batch_expired``)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import openai
import pytest

from support.constants import CLIENT_TIMEOUT_S, SHARED_FERNET_KEY, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, known_everywhere, wait_until
from support.postgres import fresh_database

FAST = {
    "OMNIRELAY_BATCH_POLL_INTERVAL_S": "0.05",
    "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.2",
    "OMNIRELAY_HOLD_LEASE_S": "1",
    "OMNIRELAY_BATCH_LEASE_S": "3",
}


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=UPSTREAM_KEY)
    server.start()
    yield server
    server.stop()


def _input(count: int) -> bytes:
    return b"".join(
        json.dumps(
            {"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-4o-mini", "max_tokens": 16,
                      "messages": [{"role": "user", "content": f"number {i}"}]}}
        ).encode() + b"\n"
        for i in range(count)
    )  # fmt: skip


def _start_batch(server: Gateway, key: str, path: Path, count: int) -> tuple[openai.OpenAI, str]:
    client = openai.OpenAI(
        api_key=key, base_url=server.base_url, timeout=CLIENT_TIMEOUT_S, max_retries=0
    )
    path.write_bytes(_input(count))
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return client, batch.id


def _finished(client: openai.OpenAI, batch_id: str, timeout: float) -> Any:
    found: list[Any] = []

    def ended() -> bool:
        batch = client.batches.retrieve(batch_id)
        found[:] = [batch]
        return batch.status in ("completed", "expired", "cancelled", "failed")

    wait_until(ended, timeout=timeout, interval=0.2)
    return found[0]


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def _done_lines(server: Gateway) -> int:
    database = server.workdir / "data" / "omnirelay.db"
    with closing(sqlite3.connect(database, timeout=30)) as connection:
        row = connection.execute("SELECT COUNT(*) FROM batch_lines WHERE state = 'done'")
        return int(row.fetchone()[0])


def _check_books(server: Gateway, key_id: int, output: list[dict[str, Any]]) -> None:
    book = server.admin("GET", f"/admin/ledger?key_id={key_id}").json()  # every entry
    charges = Counter(e["request_id"] for e in book["entries"] if e["amount_nano"] > 0)
    for line in output:
        assert charges[line["id"]] == 1, f"{line['custom_id']} charged {charges[line['id']]}x"
    assert book["total_nano"] == book["key_used_nano"], "the ledger does not balance"


def _logged(server: Gateway, key_id: int) -> set[str]:
    """Every request id the key's log holds, a page at a time."""
    found: set[str] = set()
    cursor: str | None = None
    while True:
        page = f"/admin/logs?key_id={key_id}&limit=1000" + (f"&after={cursor}" if cursor else "")
        logs = server.admin("GET", page).json()
        found.update(row["request_id"] for row in logs["data"])
        cursor = logs["next"]
        if not cursor:
            return found


def test_sigkill_mid_batch_resumes_answers_each_line_once_and_charges_once(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    # The full size, by hand: OMNIRELAY_TEST_BATCH_LINES=10000 pytest --timeout 900 -k sigkill
    count = int(os.environ.get("OMNIRELAY_TEST_BATCH_LINES", "600"))
    upstream.answer_delay = 0.02
    upstream.fail_every = 20  # 5% of calls: 500s and 429s by turns
    env = {**FAST, "OMNIRELAY_BATCH_CONCURRENCY": "32", "OMNIRELAY_BATCH_MAX_INFLIGHT": "32"}
    server = Gateway(tmp_path / "gw", env=env)
    server.start()
    try:
        server.add_channel(name="up", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"])  # fmt: skip
        created = server.create_key(name="batch")
        client, batch_id = _start_batch(server, created["key"], tmp_path / "in.jsonl", count)
        wait_until(lambda: _done_lines(server) >= count // 4, timeout=60, interval=0.05)
        server.kill()
        assert _done_lines(server) < count, "the batch finished before the kill"
        server.start()
        client = openai.OpenAI(
            api_key=created["key"], base_url=server.base_url, timeout=CLIENT_TIMEOUT_S,
            max_retries=0,
        )  # fmt: skip
        batch = _finished(client, batch_id, timeout=120)
        assert batch.status == "completed"
        output, errors = _jsonl(client, batch.output_file_id), _jsonl(client, batch.error_file_id)
        answered = Counter(line["custom_id"] for line in output + errors)
        assert answered == Counter(f"line-{i}" for i in range(count)), "a line twice or never"
        assert errors, "the fake failed no call"
        assert batch.request_counts is not None
        assert batch.request_counts.completed == len(output)
        assert batch.request_counts.failed == len(errors)
        for line in errors:
            assert line["response"]["status_code"] >= 400
        _check_books(server, created["id"], output)
        assert {line["id"] for line in output} <= _logged(server, created["id"])
    finally:
        server.stop()


def test_expired_batch_answers_unfinished_lines_batch_expired(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    upstream.answer_delay = 0.3
    env = {**FAST, "OMNIRELAY_BATCH_COMPLETION_WINDOW_S": "2", "OMNIRELAY_BATCH_CONCURRENCY": "2"}
    server = Gateway(tmp_path / "gw", env=env)
    server.start()
    try:
        server.add_channel(name="up", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"])  # fmt: skip
        created = server.create_key(name="batch")
        client, batch_id = _start_batch(server, created["key"], tmp_path / "in.jsonl", 40)
        batch = _finished(client, batch_id, timeout=30)
        output, errors = _jsonl(client, batch.output_file_id), _jsonl(client, batch.error_file_id)
    finally:
        server.stop()
    assert batch.status == "expired" and batch.expired_at is not None
    assert 0 < len(output) < 40
    assert Counter(line["custom_id"] for line in output + errors) == Counter(
        f"line-{i}" for i in range(40)
    )
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}
    assert all(line["response"] is None for line in errors)


@pytest.mark.postgres
def test_two_processes_on_postgresql_share_one_batch(tmp_path: Path, upstream: FakeOpenAI) -> None:
    count = 300
    upstream.answer_delay = 0.02
    with fresh_database() as url:
        env = {
            **FAST,
            "OMNIRELAY_DATABASE_URL": url,
            "OMNIRELAY_SECRET_KEY": SHARED_FERNET_KEY,
            "OMNIRELAY_DATA_DIR": str(tmp_path / "shared-data"),  # files on shared storage
            "OMNIRELAY_BATCH_CONCURRENCY": "4",
        }
        first, second = Gateway(tmp_path / "a", env=env), Gateway(tmp_path / "b", env=env)
        first.start()
        second.start()
        try:
            first.add_channel(name="up", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                              models=["gpt-4o-mini"])  # fmt: skip
            created = first.create_key(name="shared")
            known_everywhere(second, created["key"])
            other = openai.OpenAI(
                api_key=created["key"], base_url=second.base_url, timeout=CLIENT_TIMEOUT_S,
                max_retries=0,
            )  # fmt: skip
            # The second serves the model too (it has read the channel) before the batch.
            other.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "ready"}]
            )
            _, batch_id = _start_batch(first, created["key"], tmp_path / "in.jsonl", count)
            started = time.monotonic()
            batch = _finished(other, batch_id, timeout=120)
            elapsed = time.monotonic() - started
            assert batch.status == "completed"
            output = _jsonl(other, batch.output_file_id)
            assert batch.error_file_id is None, _jsonl(other, batch.error_file_id)[:2]
            assert Counter(line["custom_id"] for line in output) == Counter(
                f"line-{i}" for i in range(count)
            )
            # No line ran twice: the upstream saw each prompt once.
            prompts = Counter(
                request.body["messages"][0]["content"]
                for request in upstream.received
                if request.path == "/v1/chat/completions"
                and request.body["messages"][0]["content"] != "ready"
            )
            assert prompts == Counter(f"number {i}" for i in range(count))
            # Each process runs at most 4 lines at once: more at once upstream means both ran.
            assert upstream.peak_waiting > 4, upstream.peak_waiting
            print(f"\n{count} lines on two processes in {elapsed:.2f}s")
            _check_books(second, created["id"], output)
        finally:
            first.stop()
            second.stop()


def _claimed_lines(server: Gateway) -> int:
    database = server.workdir / "data" / "omnirelay.db"
    with closing(sqlite3.connect(database, timeout=30)) as connection:
        row = connection.execute("SELECT COUNT(*) FROM batch_lines WHERE state = 'claimed'")
        return int(row.fetchone()[0])


def test_sigterm_gives_line_leases_back_and_a_restart_goes_on_at_once(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    upstream.answer_delay = 0.2
    # Leases far longer than the test: only giving them back lets the restart go on.
    env = {**FAST, "OMNIRELAY_BATCH_LEASE_S": "600", "OMNIRELAY_BATCH_CONCURRENCY": "8"}
    server = Gateway(tmp_path / "gw", env=env)
    server.start()
    try:
        server.add_channel(name="up", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"])  # fmt: skip
        created = server.create_key(name="batch")
        client, batch_id = _start_batch(server, created["key"], tmp_path / "in.jsonl", 120)
        wait_until(lambda: _done_lines(server) >= 16, timeout=30, interval=0.05)
        server.stop(signal.SIGTERM)
        assert _claimed_lines(server) == 0
        assert _done_lines(server) < 120
        server.start()
        client = openai.OpenAI(
            api_key=created["key"], base_url=server.base_url, timeout=CLIENT_TIMEOUT_S,
            max_retries=0,
        )  # fmt: skip
        batch = _finished(client, batch_id, timeout=60)
        output = _jsonl(client, batch.output_file_id)
        assert batch.status == "completed" and batch.error_file_id is None
        assert Counter(line["custom_id"] for line in output) == Counter(
            f"line-{i}" for i in range(120)
        )
        _check_books(server, created["id"], output)
    finally:
        server.stop()


def test_two_workers_on_one_sqlite_file_share_one_batch(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    count = 200
    upstream.answer_delay = 0.05
    server = Gateway(tmp_path / "gw", env={**FAST, "OMNIRELAY_BATCH_CONCURRENCY": "4"})
    server.start(workers=2)
    try:
        server.add_channel(name="up", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"])  # fmt: skip
        created = server.create_key(name="batch")
        known_everywhere(server, created["key"])
        client, batch_id = _start_batch(server, created["key"], tmp_path / "in.jsonl", count)
        batch = _finished(client, batch_id, timeout=120)
        output = _jsonl(client, batch.output_file_id)
    finally:
        server.stop()
    assert batch.status == "completed" and batch.error_file_id is None
    assert Counter(line["custom_id"] for line in output) == Counter(
        f"line-{i}" for i in range(count)
    )
    prompts = Counter(
        request.body["messages"][0]["content"]
        for request in upstream.received
        if request.path == "/v1/chat/completions"
    )
    assert prompts == Counter(f"number {i}" for i in range(count)), "a line ran twice"
    # Each worker runs at most 4 lines at once: more at once upstream means both ran.
    assert upstream.peak_waiting > 4, upstream.peak_waiting
