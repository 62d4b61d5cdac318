"""What the task tests share: a gateway's settings for fast polling, a task row, and a
lane's keys, ledgers and task rows."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from omnirelay.store.tasks import QUEUED
from support.gateway import Gateway

HOUR_MS = 3_600_000
VIDEOS_UPSTREAM_KEY = "sk-upstream-videos-5c1d"
FAST = {
    "OMNIRELAY_TASK_POLL_INTERVAL_S": "0.1",
    "OMNIRELAY_TASK_POLL_MIN_S": "0.1",
    "OMNIRELAY_TASK_POLL_MAX_S": "0.5",
    "OMNIRELAY_TASK_EARLY_POLL_S": "0.3",
    "OMNIRELAY_TASK_SUBMIT_TIMEOUT_S": "1",
    "OMNIRELAY_SUBMIT_AMBIGUITY_S": "3",
    "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.1",
}


def task_values(key_id: int, **extra: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    values: dict[str, Any] = {
        "public_id": "video_" + secrets.token_hex(12),
        "key_id": key_id,
        "family": "openai.video",
        "action": "create",
        "model": "sora-2",
        "state": QUEUED,
        "request": {"prompt": "a cat", "seconds": "4", "size": "720x1280"},
        "hold_nano": 400_000_000,
        "request_id": "req_" + secrets.token_hex(8),
        "deadline_ms": now + HOUR_MS,
        "next_poll_ms": now,
        "created_ms": now,
        "updated_ms": now,
    }
    values.update(extra)
    return values


@dataclass
class TaskLane:
    """A test module's gateway for one task family: its keys, their ledgers, the task rows.
    A module's own lane subclasses it with its fakes and the family's own calls."""

    gateway: Gateway
    prefix: ClassVar[str] = "task-"
    group: ClassVar[str | None] = None  # the keys' group, unless a test names another

    def key(self, **fields: Any) -> tuple[str, int]:
        """A new key (secret, id), named after the family."""
        if self.group is not None:
            fields.setdefault("group", self.group)
        created = self.gateway.create_key(name=self.prefix + secrets.token_hex(3), **fields)
        return created["key"], created["id"]

    def book(self, key_id: int) -> dict[str, Any]:
        """The key's ledger, as ``/admin/ledger`` shows it."""
        return dict(self.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json())

    def row(self, task_id: str) -> dict[str, Any]:
        """The task's row, as ``/admin/tasks/{id}`` shows it."""
        return dict(self.gateway.admin("GET", f"/admin/tasks/{task_id}").json())
