"""Tasks under pressure: concurrent submits against a quota, a gateway killed mid-poll and
restarted, and two gateway processes on PostgreSQL sharing 200 active tasks while one of
them is killed. Every task ends, and is settled exactly once. A process told to stop
(SIGTERM) gives its task leases back at once: the other finishes its tasks without waiting
for the leases to run out."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.constants import CLIENT_TIMEOUT_S
from support.fake_videos import FakeVideos
from support.gateway import Gateway, wait_until
from support.postgres import fresh_database
from support.tasks import FAST
from support.tasks import VIDEOS_UPSTREAM_KEY as UPSTREAM_KEY

FOUR_SECONDS = 400_000_000  # sora-2, 4 s at 720x1280: $0.40
FERNET_KEY = "q0Wr6XuB9o6tx0JQ1yq0mZ2pYp1bS8Z1m5e9nQG7Zx4="


def _submit(gateway: Gateway, key: str, prompt: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/videos",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "sora-2", "prompt": prompt, "seconds": "4"},
        timeout=30,
    )


def _tasks(gateway: Gateway, key_id: int) -> list[dict[str, Any]]:
    answer = gateway.admin("GET", f"/admin/tasks?key_id={key_id}&limit=1000")
    return list(answer.json()["data"])


def _all_ended(gateway: Gateway, key_id: int, count: int) -> bool:
    rows = _tasks(gateway, key_id)
    return len(rows) == count and all(row["finished_ms"] is not None for row in rows)


def _check_books(gateway: Gateway, key_id: int, rows: list[dict[str, Any]]) -> None:
    """One ledger entry per task that succeeded, of its charge; none for the others.

    A submit's own hold, left open by a process killed before its row was written, is
    settled by the stream reconciler at its last checkpoint: nothing, for a submit.
    """
    wait_until(lambda: not _book(gateway, key_id)["open_holds"], timeout=10, interval=0.5)
    book = _book(gateway, key_id)
    entries = [entry for entry in book["entries"] if entry["kind"] == "charge"]
    assert all(e["amount_nano"] == 0 for e in book["entries"] if e["kind"] != "charge")
    charged = {entry["request_id"]: entry["amount_nano"] for entry in entries}
    assert len(charged) == len(entries), "a charge was entered twice"
    done = [row for row in rows if row["state"] == "succeeded"]
    succeeded = {row["public_id"]: row["charge_nano"] for row in done}
    assert charged == succeeded
    assert book["total_nano"] == book["key_used_nano"], "the ledger does not balance"


def _book(gateway: Gateway, key_id: int) -> dict[str, Any]:
    return dict(gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json())


def test_fifty_concurrent_submits_on_a_quota_for_ten_accept_exactly_ten(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path, env=FAST)
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        created = gateway.create_key(name="ten", quota_usd="4")  # ten $0.40 videos
        start = threading.Barrier(50)

        def submit(n: int) -> int:
            start.wait()
            return _submit(gateway, created["key"], f"video {n}").status_code

        with ThreadPoolExecutor(50) as pool:
            statuses = Counter(pool.map(submit, range(50)))
        assert statuses == {200: 10, 429: 40}
        assert len(fake.jobs) == 10
        wait_until(lambda: _all_ended(gateway, created["id"], 10), timeout=30, interval=0.5)
        rows = _tasks(gateway, created["id"])
        assert Counter(row["state"] for row in rows) == {"succeeded": 10}
        _check_books(gateway, created["id"], rows)
        book = gateway.admin("GET", f"/admin/ledger?key_id={created['id']}").json()
        assert book["total_nano"] == 10 * FOUR_SECONDS
        assert _submit(gateway, created["key"], "one more").status_code == 429
    finally:
        gateway.stop()
        fake.stop()


def test_sigkill_while_polling_then_restart_resumes_every_task_once(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    env = {**FAST, "OMNIRELAY_TASK_LEASE_S": "2", "OMNIRELAY_TASK_POLL_TIMEOUT_S": "1",
           "OMNIRELAY_HOLD_LEASE_S": "1", "OMNIRELAY_SUBMIT_AMBIGUITY_S": "6"}  # fmt: skip
    gateway = Gateway(tmp_path, env=env)
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        created = gateway.create_key(name="crash")
        key, key_id = created["key"], created["id"]
        fake.set(polls_to_finish=12, poll_delay_s=0.05)
        for n in range(20):
            assert _submit(gateway, key, f"video {n}").status_code == 200
        # Two submits whose answers never come in time: one made upstream, one not.
        fake.set(late_submits=1, late_by_s=3.0)
        made = _submit(gateway, key, "made but unanswered").json()["id"]
        fake.set(late_submits=1, late_creates=False, late_by_s=3.0)
        lost = _submit(gateway, key, "never made").json()["id"]
        wait_until(
            lambda: _count(_tasks(gateway, key_id), "succeeded") >= 3, timeout=30, interval=0.5
        )

        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGKILL)  # mid-poll, mid-download, leases held
        gateway.process.wait()
        gateway.process = None
        before = {row["public_id"]: row["state"] for row in _rows_offline(gateway, key_id)}
        assert any(state in ("queued", "running", "submitting") for state in before.values())

        gateway.start()
        wait_until(lambda: _all_ended(gateway, key_id, 22), timeout=60, interval=0.5)
        rows = {row["public_id"]: row for row in _tasks(gateway, key_id)}
        assert rows[made]["state"] == "succeeded", "the unanswered submit was not found"
        assert rows[lost]["state"] == "failed"
        assert rows[lost]["error"]["code"] == "submit_unconfirmed"
        assert Counter(row["state"] for row in rows.values()) == {"succeeded": 21, "failed": 1}
        assert len(fake.jobs) == 21, "a submit was sent twice"
        _check_books(gateway, key_id, list(rows.values()))
    finally:
        gateway.stop()
        fake.stop()


def _count(rows: list[dict[str, Any]], state: str) -> int:
    return sum(1 for row in rows if row["state"] == state)


def _rows_offline(gateway: Gateway, key_id: int) -> list[dict[str, Any]]:
    listed = gateway.cli("task", "list", "--key", str(key_id), "--limit", "1000", "--json")
    return list(json.loads(listed.stdout))


@pytest.mark.postgres
def test_two_processes_on_postgresql_share_200_tasks_and_survive_losing_one(
    tmp_path: Path,
) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    with fresh_database() as url:
        env = {
            **FAST,
            "OMNIRELAY_DATABASE_URL": url,
            "OMNIRELAY_SECRET_KEY": FERNET_KEY,
            "OMNIRELAY_DATA_DIR": str(tmp_path / "shared-data"),  # results on shared storage
            "OMNIRELAY_TASK_LEASE_S": "2",
            "OMNIRELAY_TASK_POLL_TIMEOUT_S": "1",
            "OMNIRELAY_HOLD_LEASE_S": "1",
            "OMNIRELAY_TASK_POLL_MIN_S": "0.2",
            # Few polls at once per channel: claimed tasks queue longer than their lease.
            "OMNIRELAY_TASK_CHANNEL_POLLS": "2",
        }
        first = Gateway(tmp_path / "a", env=env)
        second = Gateway(tmp_path / "b", env=env)
        first.start()
        second.start()
        try:
            first.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                              models=["sora-2"])  # fmt: skip
            created = first.create_key(name="shared")
            key, key_id = created["key"], created["id"]
            fake.set(polls_to_finish=5, poll_delay_s=0.05)
            wait_until(lambda: _submit(second, key, "warm-up").status_code == 200, timeout=5)

            def submit(n: int) -> int:
                return _submit(first if n % 2 else second, key, f"shared {n}").status_code

            with ThreadPoolExecutor(16) as pool:
                assert set(pool.map(submit, range(199))) == {200}
            wait_until(
                lambda: _count(_tasks(second, key_id), "succeeded") >= 20, timeout=60, interval=0.5
            )
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            first.process = None

            wait_until(lambda: _all_ended(second, key_id, 200), timeout=180, interval=0.5)
            rows = _tasks(second, key_id)
            assert Counter(row["state"] for row in rows) == {"succeeded": 200}
            assert fake.overlaps == 0, "one upstream task was polled by two processes at once"
            assert len(fake.jobs) == 200
            _check_books(second, key_id, rows)
            client = openai.OpenAI(
                base_url=second.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
            )
            assert len(client.videos.download_content(rows[0]["public_id"]).content) == 48_000
        finally:
            first.stop()
            second.stop()
            fake.stop()


@pytest.mark.postgres
def test_sigterm_gives_task_leases_back_so_another_process_finishes_them_at_once(
    tmp_path: Path,
) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    lease_s = 120.0
    with fresh_database() as url:
        env = {
            **FAST,
            "OMNIRELAY_DATABASE_URL": url,
            "OMNIRELAY_SECRET_KEY": FERNET_KEY,
            "OMNIRELAY_DATA_DIR": str(tmp_path / "shared-data"),
            "OMNIRELAY_TASK_LEASE_S": str(lease_s),
            "OMNIRELAY_TASK_POLL_TIMEOUT_S": "60",
        }
        first = Gateway(tmp_path / "a", env=env)
        second = Gateway(tmp_path / "b", env=env)
        first.start()
        try:
            first.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                              models=["sora-2"])  # fmt: skip
            created = first.create_key(name="leased")
            key, key_id = created["key"], created["id"]
            # The first process's polls hang upstream: it holds every task's lease.
            fake.set(polls_to_finish=2, poll_delay_s=45.0)
            for n in range(6):
                assert _submit(first, key, f"leased {n}").status_code == 200

            def all_leased() -> bool:
                rows = _tasks(first, key_id)
                return all(row["lease_owner"] and row["lease_until_ms"] for row in rows)

            wait_until(all_leased, timeout=15, interval=0.2)
            owners = {row["lease_owner"] for row in _tasks(first, key_id)}
            assert len(owners) == 1
            second.start()  # it finds nothing due: every task is leased for two minutes
            assert _count(_tasks(second, key_id), "succeeded") == 0

            fake.set(poll_delay_s=0.0)
            assert first.process is not None
            signalled = time.monotonic()
            first.process.send_signal(signal.SIGTERM)
            first.process.wait(30)
            first.stop()
            assert first.returncode == 0, first.output

            wait_until(lambda: _all_ended(second, key_id, 6), timeout=30, interval=0.2)
            taken_over_s = time.monotonic() - signalled
            assert taken_over_s < lease_s / 4, f"took {taken_over_s:.1f} s: the lease was waited"
            rows = _tasks(second, key_id)
            assert Counter(row["state"] for row in rows) == {"succeeded": 6}
            assert not {row["lease_owner"] for row in rows} - {None}
            _check_books(second, key_id, rows)
        finally:
            first.stop()
            second.stop()
            fake.stop()
