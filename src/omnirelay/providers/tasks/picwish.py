"""A PicWish-style image API as a task dialect (the ``/task/pic/...`` family's upstream).

Each action is its own resource: ``POST /api/tasks/visual/segmentation`` (multipart or
form, ``X-API-KEY``) creates a task and answers ``{"status": 200, "data": {"task_id"}}``;
``GET`` on the same path plus ``/{task_id}`` reads it: ``data.state`` is 1 when done, < 0
when it failed (the code names why), 0 and 2-4 while it waits or runs, with ``progress``
and the result's URLs (``image``, ``mask``, ``file``), which expire in an hour. The task is
always made asynchronously upstream (``sync=0``, ``return_type=1``: URLs); a client's
``sync=1`` is the gateway's own wait. There is no list (an unanswered submit cannot be
found) and no cancel. Billed per successful call, by action (``task_actions``), and per
image for backgrounds (``batch_size``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import UpstreamFailure, error_for, error_object, text
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
from omnirelay.providers.tasks.envelope import NoFindNoCancel, enveloped, task_id_of, url_assets
from omnirelay.wire.errors import GatewayError, UpstreamError
from omnirelay.wire.uploads import Upload

PATHS = {
    "segmentation": "/api/tasks/visual/segmentation",
    "scale": "/api/tasks/visual/scale",
    "background": "/api/tasks/visual/background",
    "watermark_auto": "/api/tasks/visual/external/watermark-remove",
    "watermark": "/api/tasks/visual/inpaint",
    "ocr": "/api/tasks/document/ocr",
    "idphoto": "/api/tasks/visual/idphoto",
    "colorization": "/api/tasks/visual/colorization",
}
RESULTS = ("image", "mask", "file")
"""The result fields a finished task may name (a URL, or a list of them)."""
MAX_RESULTS = 8
STATE_DETAIL = {
    -8: "processing timeout",
    -7: "invalid image file",
    -5: "image too large",
    -3: "the source file could not be downloaded",
    -2: "the result could not be stored",
    -1: "task failed",
}
BACKOFF = 1.5


class PicWish(NoFindNoCancel):
    max_batch = 1

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        said = error_object(payload)
        message = text(said.get("message")) or f"HTTP {status}"
        # 401: the key is wrong or the service is not enabled for it.
        failure = UpstreamFailure(status, message, bad_credentials=status == 401)
        return error_for(failure, retry_after)

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        fields = [(k, str(v)) for k, v in submission.params.items() if v is not None]
        fields += [("sync", "0"), ("return_type", "1")]
        files = list(submission.upload.files) if submission.upload else []
        return UpstreamRequest(
            "POST",
            _url(endpoint, submission.action),
            _headers(endpoint),
            b"",
            Upload(fields, files),
        )

    def submit_response(self, payload: bytes) -> TaskStatus:
        raise UpstreamError("A PicWish task is named by its action; read it with the submission.")

    def submit_response_to(self, payload: bytes, submission: Submission) -> TaskStatus:
        data = enveloped(payload, _status_ok)
        task_id = task_id_of(data, forbidden="/")
        # The poll path depends on the action, so the engine's id for the task names both.
        return _status({**data, "state": data.get("state", 0)}, f"{submission.action}/{task_id}")

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        (upstream_id,) = upstream_ids
        action, _, task_id = upstream_id.partition("/")
        url = f"{_url(endpoint, action)}/{quote(task_id, safe='')}"
        return UpstreamRequest("GET", url, _headers(endpoint), b"")

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        (asked,) = upstream_ids
        data = enveloped(payload, _status_ok)
        if data.get("task_id") not in (None, asked.partition("/")[2]):
            raise UpstreamError("The upstream answered about another task than asked.")
        return {asked: _status(data, asked)}

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        return url_assets(status)

    def hold_units(self, submission: Submission) -> Billable:
        return _billable(submission)

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        return _billable(submission)

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return float(min(min_s * BACKOFF ** min(unchanged_polls, 32), max_s))


def _url(endpoint: Endpoint, action: str) -> str:
    path = PATHS.get(action)
    if path is None:
        raise UpstreamError(f"PicWish has no action '{action[:32]}'.")
    return endpoint.base_url.rstrip("/") + path


def _headers(endpoint: Endpoint) -> dict[str, str]:
    return {"X-API-KEY": endpoint.api_key, **endpoint.headers}


def _status_ok(body: Mapping[str, Any]) -> bool:
    return body.get("status") in (200, None)


def _status(data: Mapping[str, Any], upstream_id: str) -> TaskStatus:
    """A task's ``data``, read as data: every field checked before it is used."""
    state = data.get("state")
    state = state if isinstance(state, int) and not isinstance(state, bool) else 0
    progress = data.get("progress")
    progress = min(max(progress, 0), 100) if isinstance(progress, int) else 0
    said = f"state {state}"
    if state < 0:
        detail = text(data.get("state_detail"))[:200] or STATE_DETAIL.get(state, "task failed")
        error = {"code": str(state), "message": detail}
        return TaskStatus(FAILED, said, progress, upstream_id, error)
    if state == 1:
        urls = _urls(data)
        if not urls:
            error = {"code": "-1", "message": "The task finished without a result."}
            return TaskStatus(FAILED, said, 100, upstream_id, error)
        return TaskStatus(SUCCEEDED, said, 100, upstream_id, outputs={"urls": urls})
    # 0 queued (over the QPS), 2 preparing, 3 waiting, 4 processing; others: not an end.
    return TaskStatus(QUEUED if state == 0 else RUNNING, said, progress, upstream_id)


def _urls(data: Mapping[str, Any]) -> dict[str, str]:
    """The result files: ``image``, ``mask``, ``file``; a list is numbered (``image.1``)."""
    urls: dict[str, str] = {}
    for name in RESULTS:
        value = data.get(name)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            urls[name] = value
        elif isinstance(value, list):
            links = [v for v in value if isinstance(v, str) and v.startswith(("http", "https"))]
            for index, link in enumerate(links[:MAX_RESULTS], start=1):
                urls[f"{name}.{index}"] = link
    return urls


def _billable(submission: Submission) -> Billable:
    count = 1
    if submission.action == "background":
        try:
            count = int(str(submission.params.get("batch_size") or 1))
        except ValueError:
            count = 1
    return Billable("task_action", submission.action, max(count, 1))
