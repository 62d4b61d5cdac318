"""Tripo's 3D API (``/v2/openapi``) as a task dialect.

Every task is ``POST /task`` with a JSON ``{"type": ..., ...}`` (``text_to_model``,
``image_to_model``, ``multiview_to_model``, ``texture_model``, ``refine_model``,
``animate_rig``, ``convert_model``; the last four work on an earlier task,
``original_model_task_id``), answered ``{"code": 0, "data": {"task_id"}}``; ``GET
/task/{task_id}`` reads it: ``status`` is ``queued``, ``running``, ``success``, or an end
(``failed``, ``banned``, ``expired``, ``cancelled``, ``unknown``), ``output`` names the
files (``model``, ``base_model``, ``pbr_model``, ``rendered_image``; their URLs expire in
minutes). Errors are ``{"code", "message", "suggestion"}``: 2000 over the rate limit (429),
2010 out of credits (403). No list, no cancel. Billed per task, by type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import UpstreamFailure, error_for, text
from omnirelay.providers.tasks.base import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Asset,
    Billable,
    Submission,
    TaskStatus,
)
from omnirelay.providers.tasks.envelope import (
    NoFindNoCancel,
    code_zero,
    enveloped,
    task_id_of,
    url_assets,
)
from omnirelay.wire.errors import GatewayError, UpstreamError

STATES = {"queued": QUEUED, "running": RUNNING, "success": SUCCEEDED}
ENDS = ("failed", "banned", "expired", "cancelled", "unknown")
MODELS = ("model", "base_model", "pbr_model")
PREVIEW = "rendered_image"
NO_CREDITS = 2010
BACKOFF = 1.5


class Tripo(NoFindNoCancel):
    max_batch = 1

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = text(body.get("message")) or f"HTTP {status}"
        failure = UpstreamFailure(
            status,
            message,
            relayed={"code": str(body.get("code")) if body.get("code") is not None else None},
            no_balance=body.get("code") == NO_CREDITS,
            bad_credentials=status == 401,
        )
        return error_for(failure, retry_after)

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        body: dict[str, Any] = {"type": submission.action, **submission.params}
        if submission.source_upstream_id is not None:
            body["original_model_task_id"] = submission.source_upstream_id
        url = endpoint.base_url.rstrip("/") + "/task"
        return UpstreamRequest("POST", url, _headers(endpoint, json=True), orjson.dumps(body))

    def submit_response(self, payload: bytes) -> TaskStatus:
        data = enveloped(payload, code_zero)
        return TaskStatus(QUEUED, "queued", 0, task_id_of(data))

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        (upstream_id,) = upstream_ids
        url = f"{endpoint.base_url.rstrip('/')}/task/{quote(upstream_id, safe='')}"
        return UpstreamRequest("GET", url, _headers(endpoint, json=False), b"")

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        (asked,) = upstream_ids
        data = enveloped(payload, code_zero)
        if task_id_of(data) != asked:
            raise UpstreamError("The upstream answered about another task than asked.")
        return {asked: _status(data, asked)}

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        return url_assets(status, required=lambda name: name != PREVIEW)

    def hold_units(self, submission: Submission) -> Billable:
        return Billable("task_action", submission.action, 1)

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        return Billable("task_action", submission.action, 1)

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return float(min(min_s * BACKOFF ** min(unchanged_polls, 32), max_s))


def _headers(endpoint: Endpoint, *, json: bool) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {endpoint.api_key}"}
    if json:
        headers["Content-Type"] = "application/json"
    return {**headers, **endpoint.headers}


def _status(data: Mapping[str, Any], upstream_id: str) -> TaskStatus:
    raw = data.get("status")
    said = raw[:32] if isinstance(raw, str) else "unknown"
    progress = data.get("progress")
    progress = min(max(progress, 0), 100) if isinstance(progress, int) else 0
    created = data.get("create_time")
    created = created if isinstance(created, int) else None
    if said in ENDS:
        message = text(data.get("error_message"))[:500] or f"The 3D task ended {said}."
        error = {"code": said, "message": message}
        return TaskStatus(FAILED, said, progress, upstream_id, error, created_at=created)
    state = STATES.get(said, RUNNING)
    if state != SUCCEEDED:
        return TaskStatus(state, said, progress, upstream_id, created_at=created)
    found = data.get("output")
    output: Mapping[str, Any] = found if isinstance(found, dict) else {}
    urls = {
        name: url
        for name in (*MODELS, PREVIEW)
        if isinstance(url := output.get(name), str) and url.startswith(("http://", "https://"))
    }
    if not any(name in urls for name in MODELS):
        error = {"code": "failed", "message": "The task finished without a model."}
        return TaskStatus(FAILED, said, 100, upstream_id, error, created_at=created)
    return TaskStatus(SUCCEEDED, said, 100, upstream_id, outputs={"urls": urls}, created_at=created)
