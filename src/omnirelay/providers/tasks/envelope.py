"""What the simpler task APIs share (PicWish, Tripo, Kling, and the embedded parser's
no-ops): a JSON envelope whose ``data`` object carries the task, a task id checked before
it is used, result files at URLs the upstream names, and no way to find a task whose
submit went unanswered or to cancel one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.tasks.base import Asset, Submission, TaskStatus
from omnirelay.wire.errors import UpstreamError

MAX_ID = 128


def enveloped(payload: bytes, ok: Callable[[Mapping[str, Any]], bool]) -> dict[str, Any]:
    """The ``data`` object of an answer whose envelope ``ok`` accepts."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The upstream's answer is not JSON.") from exc
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not ok(body):
        raise UpstreamError("The upstream's answer has no task data.")
    return data


def code_zero(body: Mapping[str, Any]) -> bool:
    """Tripo's and Kling's envelope: ``{"code": 0, "data": {...}}`` on success."""
    return body.get("code") == 0


def task_id_of(data: Mapping[str, Any], *, forbidden: str = "") -> str:
    """``data["task_id"]``, a bounded string without any of ``forbidden``'s characters."""
    task_id = data.get("task_id")
    if (
        not isinstance(task_id, str)
        or not 0 < len(task_id) <= MAX_ID
        or any(char in task_id for char in forbidden)
    ):
        raise UpstreamError("The upstream's answer has no usable task_id.")
    return task_id


def url_assets(status: TaskStatus, required: Callable[[str], bool] | None = None) -> list[Asset]:
    """A download per ``outputs["urls"]`` entry; ``required(name)`` says which must succeed."""
    urls = status.outputs.get("urls") or {}
    return [
        Asset(name, _download(url), required=required is None or required(name))
        for name, url in urls.items()
    ]


def _download(url: str) -> UpstreamRequest:
    return UpstreamRequest("GET", url, {}, b"")


class NoFindNoCancel:
    """For an API with no list to find an unanswered submit in, and no cancel."""

    def find_request(self, endpoint: Endpoint) -> None:
        return None

    def find_response(
        self, payload: bytes, submission: Submission, upstream_model: str, since_s: int
    ) -> list[TaskStatus]:
        return []

    def cancel_request(self, endpoint: Endpoint, upstream_id: str) -> None:
        return None
