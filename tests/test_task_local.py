"""Tasks the gateway works itself (``gateway/tasks/local.py``), in-process on a real runtime:
a cancel asked for on another process stops the work; a lease lost to another process
stops it without writing anything; a task claimed with no room goes back to the queue.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from omnirelay.config import Settings
from omnirelay.gateway.tasks.local import Also, LocalEnd
from omnirelay.server import Runtime, build_runtime
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from support.gateway import wait_until_async

FAMILY = "responses"  # a family the engine knows; its work is replaced by the test's


class Held:
    """Work that runs until it is let go (or stopped), and remembers what happened."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.stopped_runs: list[str] = []
        self.ends: list[tuple[str, str]] = []
        self.go = asyncio.Event()

    async def started(self, task: TaskRow) -> bool:
        return True

    async def run(self, task: TaskRow) -> LocalEnd:
        self.running.add(task.public_id)
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.stopped_runs.append(task.public_id)
            raise
        finally:
            self.running.discard(task.public_id)
        return LocalEnd(states.SUCCEEDED)

    def stopped(self, task: TaskRow, state: str, error: Mapping[str, str]) -> Also | None:
        self.ends.append((task.public_id, state))
        return None


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path,
        admin_key="sk-admin-local-0123456789",
        task_lease_s=1.5,
        task_poll_interval_s=0.1,
        task_poll_min_s=0.2,
        task_poll_timeout_s=0.5,
        responses_background_runs=1,
    )
    built = await build_runtime(settings)
    await built.start()
    yield built
    await built.close()


async def soon(check: Callable[[], Any], timeout: float) -> None:
    """Until ``check()`` (or what it awaits) is true."""

    async def checked() -> bool:
        value = check()
        return bool(await value) if asyncio.iscoroutine(value) else bool(value)

    await wait_until_async(checked, timeout=timeout, interval=0.02)


def held(runtime: Runtime) -> Held:
    work = Held()
    runtime.state.tasks.local.register(FAMILY, work)
    return work


async def queued_task(runtime: Runtime) -> TaskRow:
    now_ms = int(time.time() * 1000)
    row = await runtime.state.store.tasks.insert(
        {
            "public_id": "resp_" + secrets.token_hex(8),
            "key_id": 1,
            "family": FAMILY,
            "action": "create",
            "model": "m",
            "state": states.QUEUED,
            "request": {"params": {}, "stored": {}, "source": None},
            "request_id": "req_local",
            "deadline_ms": now_ms + 60_000,
            "next_poll_ms": now_ms,
            "created_ms": now_ms,
            "updated_ms": now_ms,
        }
    )
    runtime.state.tasks.poller.wake()
    return row


async def row_of(runtime: Runtime, task: TaskRow) -> TaskRow:
    found = await runtime.state.store.tasks.get(task.public_id)
    assert found is not None
    return found


async def test_a_cancel_asked_for_elsewhere_stops_the_work(runtime: Runtime) -> None:
    work = held(runtime)
    task = await queued_task(runtime)
    await soon(lambda: task.public_id in work.running, timeout=5.0)
    assert (await row_of(runtime, task)).state == states.RUNNING
    # As another process asks: the row only, no word to this one.
    await runtime.state.store.tasks.request_cancel(task.public_id)
    await soon(lambda: work.stopped_runs == [task.public_id], timeout=3.0)
    await soon(lambda: work.ends == [(task.public_id, states.CANCELLED)], timeout=3.0)
    ended = await row_of(runtime, task)
    assert ended.state == states.CANCELLED and ended.charge_nano == 0


async def test_a_lease_lost_to_another_process_stops_the_work_and_writes_nothing(
    runtime: Runtime,
) -> None:
    work = held(runtime)
    task = await queued_task(runtime)
    await soon(lambda: task.public_id in work.running, timeout=5.0)
    running = await row_of(runtime, task)
    taken: Any = {"lease_owner": "another-node", "lease_until_ms": running.lease_until_ms}
    taken_row = await runtime.state.store.tasks.update(running, taken)
    assert taken_row is not None
    await soon(lambda: work.stopped_runs == [task.public_id], timeout=3.0)
    await asyncio.sleep(0.3)
    after = await row_of(runtime, task)
    assert after.version == taken_row.version and after.state == states.RUNNING
    assert after.lease_owner == "another-node" and work.ends == []


async def test_a_task_claimed_with_no_room_goes_back_to_the_queue(runtime: Runtime) -> None:
    work = held(runtime)
    first = await queued_task(runtime)
    await soon(lambda: first.public_id in work.running, timeout=5.0)
    second = await queued_task(runtime)

    async def given_back() -> bool:
        row = await row_of(runtime, second)
        return row.version > second.version and row.lease_owner is None

    await soon(given_back, timeout=3.0)
    assert (await row_of(runtime, second)).state == states.QUEUED  # not run: no room
    assert work.running == {first.public_id}
    work.go.set()  # the first ends; the second runs (and ends) in its turn

    async def both_ended() -> bool:
        rows = [await row_of(runtime, task) for task in (first, second)]
        return all(row.state == states.SUCCEEDED for row in rows)

    await soon(both_ended, timeout=5.0)
