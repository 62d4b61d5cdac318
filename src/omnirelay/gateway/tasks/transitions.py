"""How a task's row changes: what a poll, a failure to poll, or an end writes.

Pure functions of the row, what happened and the time; the poller and the submitter
apply them with a compare-and-swap (``store.tasks``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.providers.tasks.base import FAILED, QUEUED, SUCCEEDED, TaskStatus
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow

MAX_ERROR_CHARS = 500


def state_of(status: TaskStatus) -> str:
    """The row's state for what the upstream says of an open task (an upstream end is
    applied by the poller, who first stores the results or settles the failure)."""
    return states.QUEUED if status.state == QUEUED else states.RUNNING


def changed(task: TaskRow, status: TaskStatus) -> bool:
    return (
        status.upstream_status != task.upstream_status
        or status.progress != task.progress
        or state_of(status) != task.state
    )


def polled(task: TaskRow, status: TaskStatus, now_ms: int, wait_s: float) -> dict[str, Any]:
    """A poll that found the task still open (or finished, its results still to fetch)."""
    unchanged = 0 if changed(task, status) else task.unchanged_polls + 1
    values: dict[str, Any] = {
        "state": state_of(status),
        "upstream_status": status.upstream_status,
        "progress": min(status.progress, 99) if status.state != SUCCEEDED else 100,
        "unchanged_polls": unchanged,
        "polled_ms": now_ms,
        "last_error": None,
    }
    return {**values, **_next_poll(task, now_ms, wait_s)}


def poll_failed(task: TaskRow, error: str, now_ms: int, wait_s: float) -> dict[str, Any]:
    """A poll that got no usable answer: nothing about the task changes but when to ask."""
    values = {
        "unchanged_polls": task.unchanged_polls + 1,
        "polled_ms": now_ms,
        "last_error": error[:MAX_ERROR_CHARS],
    }
    return {**values, **_next_poll(task, now_ms, wait_s)}


def ended(
    state: str,
    now_ms: int,
    *,
    error: Mapping[str, str] | None = None,
    result: Mapping[str, Any] | None = None,
    charge_nano: int | None = None,
    upstream_status: str | None = None,
) -> dict[str, Any]:
    """The values of a task's last transition."""
    values: dict[str, Any] = {
        "state": state,
        "finished_ms": now_ms,
        "charge_nano": charge_nano if state == states.SUCCEEDED else 0,
    }
    if state == states.SUCCEEDED:
        values["progress"] = 100
    if error is not None:
        values["error"] = dict(error)
    if result is not None:
        values["result"] = dict(result)
    if upstream_status is not None:
        values["upstream_status"] = upstream_status
    return values


def failure_of(status: TaskStatus) -> dict[str, str]:
    if status.state == FAILED and status.error:
        return dict(status.error)
    return {"code": "task_failed", "message": "The upstream could not complete the task."}


def _next_poll(task: TaskRow, now_ms: int, wait_s: float) -> dict[str, Any]:
    # Never later than the deadline, so a task that outlives it is seen and expired.
    due = min(now_ms + int(wait_s * 1000), task.deadline_ms)
    return {"next_poll_ms": due, "lease_owner": None, "lease_until_ms": None}
