"""OpenAI's video API (``/v1/videos``, Sora) as a task dialect.

Submit is ``POST /videos`` (JSON, or multipart when an ``input_reference`` file comes
along) or ``POST /videos/{id}/remix``; each task is polled with ``GET /videos/{id}`` (the
API has no batch read); ``GET /videos`` lists recent videos, which finds a task whose
submit got no answer; ``DELETE /videos/{id}`` removes one; the results are the video and
its two previews at ``GET /videos/{id}/content?variant=...``. Billed per second of video,
by size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.providers.openai_ops import OpenAIOperations
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
from omnirelay.wire.errors import GatewayError, UpstreamError
from omnirelay.wire.uploads import Upload

STATES = {"queued": QUEUED, "in_progress": RUNNING, "completed": SUCCEEDED, "failed": FAILED}
SUBMIT_FIELDS = ("prompt", "seconds", "size", "input_reference")
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"
PREVIEWS = ("thumbnail", "spritesheet")
LIST_LIMIT = 100
MAX_ID = 256
BACKOFF = 1.5


class OpenAIVideos(OpenAIOperations):
    max_batch = 1

    def __init__(self) -> None:
        self._errors = OpenAIProvider()

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        return self._errors.error(status, payload, retry_after)

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        params = submission.params
        if submission.action == "remix":
            source = quote(submission.source_upstream_id or "", safe="")
            path = f"/videos/{source}/remix"
            return self._post_json(endpoint, path, {"prompt": params["prompt"]})
        fields = {name: params[name] for name in SUBMIT_FIELDS if params.get(name) is not None}
        fields["model"] = upstream_model
        reference = submission.upload.file("input_reference") if submission.upload else None
        if reference is None:
            return self._post_json(endpoint, "/videos", fields)
        # Only the fields the API takes, and the reference file: nothing else of the
        # client's form (a notify URL is the gateway's own) goes upstream.
        form = Upload([(k, v) for k, v in fields.items() if isinstance(v, str)], [reference])
        url = self.operation_url(endpoint, "/videos", upstream_model)
        headers = self.operation_headers(endpoint, json=False)
        return UpstreamRequest("POST", url, headers, b"", form)

    def submit_response(self, payload: bytes) -> TaskStatus:
        return _status(_object(payload))

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        (upstream_id,) = upstream_ids
        return self._get(endpoint, f"/videos/{quote(upstream_id, safe='')}")

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        status = _status(_object(payload))
        (asked,) = upstream_ids
        if status.upstream_id != asked:
            raise UpstreamError("The upstream answered about another video than asked.")
        return {asked: status}

    def find_request(self, endpoint: Endpoint) -> UpstreamRequest:
        return self._get(endpoint, f"/videos?limit={LIST_LIMIT}&order=desc")

    def find_response(
        self, payload: bytes, submission: Submission, upstream_model: str, since_s: int
    ) -> list[TaskStatus]:
        listing = _object(payload, "data")
        found: list[TaskStatus] = []
        for item in listing["data"] if isinstance(listing["data"], list) else ():
            if not isinstance(item, dict):
                continue
            try:
                status = _status(item)
            except UpstreamError:
                continue
            if _same_submission(item, submission, upstream_model, since_s):
                found.append(status)
        return sorted(found, key=lambda status: status.created_at or 0)

    def cancel_request(self, endpoint: Endpoint, upstream_id: str) -> UpstreamRequest:
        url = self.operation_url(endpoint, f"/videos/{quote(upstream_id, safe='')}", "")
        return UpstreamRequest("DELETE", url, self.operation_headers(endpoint, json=False), b"")

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        path = f"/videos/{quote(upstream_id, safe='')}/content"
        found = [Asset("video", self._get(endpoint, path))]
        for variant in PREVIEWS:
            request = self._get(endpoint, f"{path}?variant={variant}")
            found.append(Asset(variant, request, required=False))
        return found

    def hold_units(self, submission: Submission) -> Billable:
        params = submission.params
        return _seconds_of(params.get("size"), params.get("seconds"))

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        params, outputs = submission.params, status.outputs
        size = outputs.get("size") or params.get("size")
        seconds = outputs.get("seconds") or params.get("seconds")
        return _seconds_of(size, seconds)

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return float(min(min_s * BACKOFF ** min(unchanged_polls, 32), max_s))

    def _post_json(self, endpoint: Endpoint, path: str, body: Mapping[str, Any]) -> UpstreamRequest:
        url = self.operation_url(endpoint, path, "")
        return UpstreamRequest("POST", url, self.operation_headers(endpoint), orjson.dumps(body))

    def _get(self, endpoint: Endpoint, path: str) -> UpstreamRequest:
        url = self.operation_url(endpoint, path, "")
        return UpstreamRequest("GET", url, self.operation_headers(endpoint, json=False), b"")


def _object(payload: bytes, required: str = "id") -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The upstream's video answer is not JSON.") from exc
    if not isinstance(body, dict) or required not in body:
        raise UpstreamError(f"The upstream's video answer has no '{required}'.")
    return body


def _status(video: Mapping[str, Any]) -> TaskStatus:
    """A video object, read as data: every field checked before it is used."""
    upstream_id = video.get("id")
    if not isinstance(upstream_id, str) or not 0 < len(upstream_id) <= MAX_ID:
        raise UpstreamError("The upstream's video has no usable id.")
    raw = video.get("status")
    said = raw[:64] if isinstance(raw, str) else "unknown"
    state = STATES.get(said, RUNNING)  # an unknown status is not an end: poll again
    progress = video.get("progress")
    progress = min(max(progress, 0), 100) if isinstance(progress, int) else 0
    error = None
    if state == FAILED:
        error = _error_of(video.get("error"))
    outputs = {
        name: video[name]
        for name in ("seconds", "size")
        if isinstance(video.get(name), str) and len(video[name]) <= 16
    }
    created = video.get("created_at")
    return TaskStatus(
        state=state,
        upstream_status=said,
        progress=100 if state == SUCCEEDED else progress,
        upstream_id=upstream_id,
        error=error,
        outputs=outputs,
        created_at=created if isinstance(created, int) else None,
    )


def _error_of(value: Any) -> dict[str, str]:
    error = value if isinstance(value, dict) else {}
    code, message = error.get("code"), error.get("message")
    code = code[:64] if isinstance(code, str) and code else "video_generation_failed"
    message = message[:1000] if isinstance(message, str) and message else ""
    return {"code": code, "message": message or "The video could not be generated."}


def _same_submission(
    video: Mapping[str, Any], submission: Submission, upstream_model: str, since_s: int
) -> bool:
    params = submission.params
    created = video.get("created_at")
    if not isinstance(created, int) or created < since_s:
        return False
    if submission.action == "remix":
        return bool(
            video.get("remixed_from_video_id") == submission.source_upstream_id
            and video.get("prompt") in (None, params.get("prompt"))
        )
    model = video.get("model")
    return (
        video.get("prompt") == params.get("prompt")
        and (not isinstance(model, str) or model.startswith(upstream_model))
        and video.get("size") == (params.get("size") or DEFAULT_SIZE)
        and str(video.get("seconds")) == str(params.get("seconds") or DEFAULT_SECONDS)
    )


def _seconds_of(size: Any, seconds: Any) -> Billable:
    size = size if isinstance(size, str) else DEFAULT_SIZE
    try:
        count = int(str(seconds if seconds is not None else DEFAULT_SECONDS))
    except ValueError:
        count = int(DEFAULT_SECONDS)
    return Billable("video_seconds", size, max(count, 0))
