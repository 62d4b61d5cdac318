"""Kling's video API as a task dialect, with Kling's own auth.

A channel's key is ``ACCESS_KEY|SECRET_KEY`` (stored encrypted, as every channel key):
each request carries a fresh HS256 JWT (``iss`` the access key, valid from 5 s ago for 30
minutes) signed with the secret key, as ``Authorization: Bearer``. ``POST
/v1/videos/{text2video,image2video}`` creates a task, answered ``{code: 0, message,
request_id, data: {task_id, task_status}}``; ``GET /v1/videos/{action}/{task_id}`` reads it
(``submitted``, ``processing``, ``succeed``, ``failed`` with ``task_status_msg``; a
finished task's ``task_result.videos[{id, url, duration}]``, kept for 30 days upstream).
Errors are ``{code, message, request_id}``: 1000-1004 (401) the token, 1100-1102 (429) the
account or its balance, 1103 (403) no access, 1302-1303 (429) rate and concurrency.
Billed per second of video by mode (``video_seconds``: ``std``, ``pro``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
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
from omnirelay.wire.errors import GatewayError, UpstreamError, UpstreamRejectedCredentials

ACTIONS = ("text2video", "image2video")
STATES = {"submitted": QUEUED, "processing": RUNNING, "succeed": SUCCEEDED, "failed": FAILED}
TOKEN_TTL_S = 1800
NOT_BEFORE_S = 5
AUTH_CODES = frozenset({1000, 1001, 1002, 1003, 1004, 1103})
NO_BALANCE_CODES = frozenset({1100, 1101, 1102})
DEFAULT_MODE = "std"
DEFAULT_DURATION = "5"
MAX_VIDEOS = 4
BACKOFF = 1.5


def jwt_hs256(access_key: str, secret_key: str, now: float) -> str:
    """Kling's token: a JWT signed with HMAC-SHA256 (RFC 7519), made with the standard
    library; nothing in it is read back by the gateway."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": access_key, "exp": int(now) + TOKEN_TTL_S, "nbf": int(now) - NOT_BEFORE_S}
    signing = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
    signature = hmac.new(secret_key.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Kling(NoFindNoCancel):  # its task lists are per action, which a find is not told
    max_batch = 1

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("code")
        message = text(body.get("message")) or f"HTTP {status}"
        said = f"{message} (Kling code {code})" if isinstance(code, int) else message
        failure = UpstreamFailure(
            status,
            said,
            relayed={"code": str(code) if code is not None else None},
            no_balance=code in NO_BALANCE_CODES,
            bad_credentials=status == 401 or code in AUTH_CODES,
        )
        return error_for(failure, retry_after)

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        body = {**submission.params, "model_name": upstream_model}
        url = f"{_base(endpoint)}/v1/videos/{_action(submission.action)}"
        return UpstreamRequest("POST", url, _headers(endpoint, json=True), orjson.dumps(body))

    def submit_response(self, payload: bytes) -> TaskStatus:
        raise UpstreamError("A Kling task is named by its action; read it with the submission.")

    def submit_response_to(self, payload: bytes, submission: Submission) -> TaskStatus:
        data = enveloped(payload, code_zero)
        task_id = task_id_of(data, forbidden="/")
        # The poll path depends on the action, so the engine's id for the task names both.
        return _status(data, f"{_action(submission.action)}/{task_id}")

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        (upstream_id,) = upstream_ids
        action, _, task_id = upstream_id.partition("/")
        url = f"{_base(endpoint)}/v1/videos/{_action(action)}/{quote(task_id, safe='')}"
        return UpstreamRequest("GET", url, _headers(endpoint, json=False), b"")

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        (asked,) = upstream_ids
        data = enveloped(payload, code_zero)
        if task_id_of(data, forbidden="/") != asked.partition("/")[2]:
            raise UpstreamError("The upstream answered about another task than asked.")
        return {asked: _status(data, asked)}

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        return url_assets(status)

    def hold_units(self, submission: Submission) -> Billable:
        return _seconds(submission.params, None)

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        return _seconds(submission.params, status.outputs.get("duration"))

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return float(min(min_s * BACKOFF ** min(unchanged_polls, 32), max_s))


def _base(endpoint: Endpoint) -> str:
    return endpoint.base_url.rstrip("/")


def _action(action: str) -> str:
    if action not in ACTIONS:
        raise UpstreamError(f"Kling has no action '{action[:32]}'.")
    return action


def _headers(endpoint: Endpoint, *, json: bool) -> dict[str, str]:
    access_key, separator, secret_key = endpoint.api_key.partition("|")
    if not separator or not access_key or not secret_key:
        raise UpstreamRejectedCredentials(
            "The Kling channel's key must be 'ACCESS_KEY|SECRET_KEY'; fix it and enable the "
            "channel again."
        )
    headers = {"Authorization": f"Bearer {jwt_hs256(access_key, secret_key, time.time())}"}
    if json:
        headers["Content-Type"] = "application/json"
    return {**headers, **endpoint.headers}


def _status(data: Mapping[str, Any], upstream_id: str) -> TaskStatus:
    raw = data.get("task_status")
    said = raw[:32] if isinstance(raw, str) else "unknown"
    state = STATES.get(said, RUNNING)  # an unknown status is not an end: poll again
    created = data.get("created_at")
    created_s = created // 1000 if isinstance(created, int) else None
    if state == FAILED:
        message = text(data.get("task_status_msg"))[:500] or "The video could not be generated."
        error = {"code": "failed", "message": message}
        return TaskStatus(FAILED, said, 100, upstream_id, error, created_at=created_s)
    if state != SUCCEEDED:
        return TaskStatus(state, said, 50 if state == RUNNING else 0, upstream_id,
                          created_at=created_s)  # fmt: skip
    result = data.get("task_result")
    videos = result.get("videos") if isinstance(result, dict) else None
    urls: dict[str, str] = {}
    duration = None
    for index, video in enumerate(videos if isinstance(videos, list) else [], start=1):
        url = video.get("url") if isinstance(video, dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://")) and index <= MAX_VIDEOS:
            urls["video" if index == 1 else f"video.{index}"] = url
            if duration is None and isinstance(video.get("duration"), str | int | float):
                duration = str(video["duration"])[:8]
    if not urls:
        error = {"code": "failed", "message": "The task finished without a video."}
        return TaskStatus(FAILED, said, 100, upstream_id, error, created_at=created_s)
    outputs: dict[str, Any] = {"urls": urls}
    if duration is not None:
        outputs["duration"] = duration
    return TaskStatus(SUCCEEDED, said, 100, upstream_id, outputs=outputs, created_at=created_s)


def _seconds(params: Mapping[str, Any], made: Any) -> Billable:
    mode = params.get("mode") if params.get("mode") in ("std", "pro") else DEFAULT_MODE
    said = made if made is not None else params.get("duration") or DEFAULT_DURATION
    try:
        seconds = round(float(str(said)))
    except ValueError:
        seconds = int(DEFAULT_DURATION)
    return Billable("video_seconds", str(mode), max(seconds, 0))
