"""midjourney-proxy's API as a task dialect (novicezk/midjourney-proxy, its plus version,
and the relays that speak it, such as new-api and V-API).

Submits are ``POST /mj/submit/{imagine,action,change,simple-change,blend,describe,shorten}``
and ``POST /mj/insight-face/swap``; each answers ``{code, description, result,
properties}``. Codes 1 (submitted), 21 (the task exists: ``result`` is it, its
``properties.status`` may say it is done already) and 22 (queued, ``numberOfQueues``)
accept the task; 23 (queue full) and 9 (the proxy failed) move the submit on to the next
channel; 24 (a banned prompt), 4 (a field it refused), 3 (the task acted on is unknown)
and any other code refuse it. Tasks are polled ``POST /mj/task/list-by-condition
{ids}``, up to 50 at a time; ``GET /mj/task/list`` (the latest tasks) finds an imagine or
shorten whose submit got no answer. A task waiting on a modal (``MODAL``) is answered with
``POST /mj/submit/modal``; ``GET /mj/task/{id}/image-seed`` reads its seed. The channel's
key goes in the ``mj-api-secret`` header. Billed per action (``task_actions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import UpstreamFailure, error_for, error_object
from omnirelay.providers.tasks import reading
from omnirelay.providers.tasks.base import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Asset,
    Billable,
    Submission,
    SubmitRefusal,
    TaskStatus,
)
from omnirelay.wire.errors import (
    GatewayError,
    UpstreamClientError,
    UpstreamError,
    UpstreamUnavailable,
    clean,
)

AUTH_HEADER = "mj-api-secret"
MAX_BATCH = 50
STATUSES = {
    "NOT_START": QUEUED,
    "SUBMITTED": QUEUED,
    "MODAL": RUNNING,
    "IN_PROGRESS": RUNNING,
    "SUCCESS": SUCCEEDED,
    "FAILURE": FAILED,
    "CANCEL": FAILED,  # the plus version's cancelled task
}
ACCEPTED = (1, 21, 22)
REFUSED = {24: ("banned_prompt", 400), 4: ("validation_error", 400), 3: ("not_found", 404)}
SUBMIT_PATHS = {
    "imagine": "/mj/submit/imagine",
    "action": "/mj/submit/action",
    "change": "/mj/submit/change",
    "simple-change": "/mj/submit/simple-change",
    "blend": "/mj/submit/blend",
    "describe": "/mj/submit/describe",
    "shorten": "/mj/submit/shorten",
    "swap_face": "/mj/insight-face/swap",
}
SENT_FIELDS = {
    "imagine": ("prompt", "botType", "base64Array"),
    "action": ("customId",),
    "change": ("action", "index"),
    "simple-change": (),
    "blend": ("base64Array", "dimensions", "botType"),
    "describe": ("base64", "botType"),
    "shorten": ("prompt", "botType"),
    "swap_face": ("sourceBase64", "targetBase64"),
}
FINDABLE = {"imagine": "IMAGINE", "shorten": "SHORTEN"}
"""Submits the latest-task list can tell apart (by their prompt)."""
NO_IMAGE = ("SHORTEN",)
IMAGE_OPTIONAL = ("DESCRIBE",)
SAFE_PROPERTIES = ("numberOfQueues", "promptEn", "bannedWord", "status")
MAX_ID = 128
MAX_TEXT = 20_000
MAX_SHORT = 500
MAX_URL = 4096
MAX_BUTTONS = 32
BACKOFF = 1.5


def _told(said: Mapping[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """A refused submit as the client hears it: midjourney-proxy's ``code``,
    ``description`` and ``properties``, beside the gateway's own ``error``."""
    return {
        "code": said["code"],
        "description": said["description"],
        "result": None,
        "properties": dict(said.get("properties") or {}),
        **error,
    }


class MidjourneyRefused(UpstreamClientError, SubmitRefusal):
    """Code 24 (a banned prompt), 4 (a field refused), 3 (no such task) or any other:
    the client's to fix, never tried elsewhere."""

    def __init__(self, said: Mapping[str, Any], error_code: str, status: int) -> None:
        message = f"Midjourney refused the task (code {said['code']}): {said['description']}"
        super().__init__(status, message, error={"code": error_code})
        self.said = dict(said)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.said, self.upstream_error["code"], self.status), self.__dict__

    def body(self) -> dict[str, Any]:
        return _told(self.said, super().body())


class MidjourneyQueueFull(UpstreamUnavailable, SubmitRefusal):
    """Code 23: the proxy's queue is full; the next channel is tried."""

    def __init__(self, said: Mapping[str, Any]) -> None:
        super().__init__(f"Midjourney's queue is full (code 23): {said['description']}")
        self.code = "queue_full"
        self.said = dict(said)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.said,), self.__dict__  # copied as the attempts run out

    def body(self) -> dict[str, Any]:
        return _told(self.said, super().body())


class MidjourneyFailed(UpstreamError, SubmitRefusal):
    """Code 9: the proxy failed; the next channel is tried."""

    def __init__(self, said: Mapping[str, Any]) -> None:
        super().__init__(f"Midjourney failed to take the task (code 9): {said['description']}")
        self.said = dict(said)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.said,), self.__dict__  # copied as the attempts run out

    def body(self) -> dict[str, Any]:
        return _told(self.said, super().body())


class MidjourneyProxy:
    max_batch = MAX_BATCH

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        message = ""
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("description"), str):
            message = body["description"]
        else:
            message = str(error_object(payload).get("message") or "")
        failure = UpstreamFailure(status, message, bad_credentials=status in (401, 403))
        return error_for(failure, retry_after)

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        params = submission.params
        kind = str(params.get("submit") or "imagine")
        body = {name: params[name] for name in SENT_FIELDS[kind] if params.get(name) is not None}
        source = submission.source_upstream_id
        if kind in ("action", "change"):
            body["taskId"] = source
        elif kind == "simple-change":
            body["content"] = f"{source} {params['change']}"
        return self._post(endpoint, SUBMIT_PATHS[kind], body)

    def submit_response(self, payload: bytes) -> TaskStatus:
        said = _answer(payload)
        code = said["code"]
        if code in ACCEPTED:
            return _accepted(said)
        if code == 23:
            raise MidjourneyQueueFull(said)
        if code == 9:
            raise MidjourneyFailed(said)
        error_code, status = REFUSED.get(code, (f"midjourney_code_{code}", 400))
        raise MidjourneyRefused(said, error_code, status)

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        return self._post(endpoint, "/mj/task/list-by-condition", {"ids": list(upstream_ids)})

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        asked = set(upstream_ids)
        found: dict[str, TaskStatus] = {}
        for item in _list(payload):
            status = _task_or_none(item)
            if status is not None and status.upstream_id in asked:
                found[status.upstream_id] = status
        return found

    def find_request(self, endpoint: Endpoint) -> UpstreamRequest:
        return self._get(endpoint, "/mj/task/list")

    def find_response(
        self, payload: bytes, submission: Submission, upstream_model: str, since_s: int
    ) -> list[TaskStatus]:
        action = FINDABLE.get(str(submission.params.get("submit")))
        if action is None:
            return []  # an action on a task cannot be told from another client's
        found: list[tuple[int, TaskStatus]] = []
        for item in _list(payload):
            status = _task_or_none(item)
            submitted = item.get("submitTime") if isinstance(item, dict) else None
            if (
                status is not None
                and isinstance(submitted, int)
                and submitted >= since_s * 1000
                and item.get("action") == action
                and item.get("prompt") == submission.params.get("prompt")
            ):
                found.append((submitted, status))
        return [status for _, status in sorted(found, key=lambda pair: pair[0])]

    def cancel_request(self, endpoint: Endpoint, upstream_id: str) -> None:
        return None  # midjourney-proxy has no cancel: the gateway only stops polling

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        action = status.outputs.get("action")
        found = []
        if (url := status.files.get("image")) and action not in NO_IMAGE:
            required = action not in IMAGE_OPTIONAL
            found.append(Asset("image", UpstreamRequest("GET", url, {}, b""), required))
        if url := status.files.get("video"):
            found.append(Asset("video", UpstreamRequest("GET", url, {}, b""), required=False))
        return found

    def hold_units(self, submission: Submission) -> Billable:
        return Billable("task_action", submission.action, 1)

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        return Billable("task_action", submission.action, 1)

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return float(min(min_s * BACKOFF ** min(unchanged_polls, 32), max_s))

    # -- follow-ups that make no task of their own -------------------------------------

    def modal_request(
        self, endpoint: Endpoint, upstream_id: str, fields: Mapping[str, Any]
    ) -> UpstreamRequest:
        """The answer to a task waiting in ``MODAL``: its prompt (and mask)."""
        body = {"taskId": upstream_id, **{k: v for k, v in fields.items() if v is not None}}
        return self._post(endpoint, "/mj/submit/modal", body)

    def modal_response(self, payload: bytes) -> TaskStatus:
        return self.submit_response(payload)

    def seed_request(self, endpoint: Endpoint, upstream_id: str) -> UpstreamRequest:
        return self._get(endpoint, f"/mj/task/{quote(upstream_id, safe='')}/image-seed")

    def seed_response(self, payload: bytes) -> dict[str, Any]:
        """``{code, description, result}``: the seed as a string when code is 1."""
        said = _answer(payload)
        result = said.get("result")
        seed = str(result)[:64] if isinstance(result, (str, int)) and result != "" else None
        return {"code": said["code"], "description": said["description"], "result": seed}

    def _post(self, endpoint: Endpoint, path: str, body: Mapping[str, Any]) -> UpstreamRequest:
        headers = {AUTH_HEADER: endpoint.api_key, "Content-Type": "application/json"}
        url = endpoint.base_url.rstrip("/") + path
        return UpstreamRequest("POST", url, {**headers, **endpoint.headers}, orjson.dumps(body))

    def _get(self, endpoint: Endpoint, path: str) -> UpstreamRequest:
        url = endpoint.base_url.rstrip("/") + path
        return UpstreamRequest("GET", url, {AUTH_HEADER: endpoint.api_key, **endpoint.headers}, b"")


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("midjourney-proxy's answer is not JSON.") from exc


def _answer(payload: bytes) -> dict[str, Any]:
    """A submit's ``{code, description, result, properties}``, every field checked."""
    body = _json(payload)
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, bool) or not isinstance(code, int):
        raise UpstreamError("midjourney-proxy's answer has no 'code'.")
    description = body.get("description")
    properties = body.get("properties")
    kept = {}
    if isinstance(properties, dict):
        kept = {
            name: value[:MAX_SHORT] if isinstance(value, str) else value
            for name in SAFE_PROPERTIES
            if isinstance(value := properties.get(name), (str, int)) and not isinstance(value, bool)
        }
    return {
        "code": code,
        "description": clean(description) if isinstance(description, str) else "",
        "result": body.get("result"),
        "properties": kept,
    }


def _accepted(said: Mapping[str, Any]) -> TaskStatus:
    result = said["result"]
    if isinstance(result, bool) or not isinstance(result, (str, int)):
        raise UpstreamError("midjourney-proxy accepted a task but gave no task id.")
    upstream_id = str(result)
    if not 0 < len(upstream_id) <= MAX_ID:
        raise UpstreamError("midjourney-proxy's task id is not usable.")
    properties = said["properties"]
    word = properties.get("status")
    word = word if word in STATUSES and STATUSES[word] != FAILED else "SUBMITTED"
    outputs = {"code": said["code"], "description": said["description"]}
    if isinstance(queued := properties.get("numberOfQueues"), int):
        outputs["numberOfQueues"] = queued
    state = STATUSES[word]
    return TaskStatus(
        state=state,
        upstream_status=word,
        progress=100 if state == SUCCEEDED else 0,
        upstream_id=upstream_id,
        outputs=outputs,
    )


def _list(payload: bytes) -> list[Any]:
    body = _json(payload)
    if not isinstance(body, list):
        raise UpstreamError("midjourney-proxy's task list is not a list.")
    return body


def _task_or_none(item: Any) -> TaskStatus | None:
    try:
        return task_status(item)
    except UpstreamError:
        return None


def task_status(task: Any) -> TaskStatus:
    """A midjourney-proxy task object, read as data: every field checked before use."""
    if not isinstance(task, dict):
        raise UpstreamError("midjourney-proxy's task is not an object.")
    raw_id = task.get("id")
    upstream_id = str(raw_id) if isinstance(raw_id, (str, int)) else ""
    if isinstance(raw_id, bool) or not 0 < len(upstream_id) <= MAX_ID:
        raise UpstreamError("midjourney-proxy's task has no usable id.")
    raw = task.get("status")
    word = raw[:64] if isinstance(raw, str) and raw else "UNKNOWN"
    state = STATUSES.get(word, RUNNING)  # an unknown status is not an end: poll again
    action = reading.text(task.get("action"), 32)
    files = {
        name: url
        for name, key in (("image", "imageUrl"), ("video", "videoUrl"))
        if isinstance(url := task.get(key), str)
        and url.startswith(("http://", "https://"))
        and len(url) <= MAX_URL
    }
    if state == SUCCEEDED and "image" not in files and action not in (*NO_IMAGE, *IMAGE_OPTIONAL):
        state = RUNNING  # no image to keep yet: not an end the gateway can deliver
    error = None
    if state == FAILED:
        reason = clean(reading.text(task.get("failReason"), MAX_SHORT))
        error = {"code": "midjourney_failure", "message": reason or "Midjourney failed the task."}
    submitted = task.get("submitTime")
    return TaskStatus(
        state=state,
        upstream_status=word,
        progress=100 if state == SUCCEEDED else reading.progress(task.get("progress")),
        upstream_id=upstream_id,
        error=error,
        outputs=_outputs(task, action) if state == SUCCEEDED else {},
        created_at=submitted // 1000 if isinstance(submitted, int) else None,
        files=files,
    )


def _outputs(task: Mapping[str, Any], action: str) -> dict[str, Any]:
    """What a finished task made, kept to render it (result files are stored apart)."""
    outputs: dict[str, Any] = {
        "action": action,
        "promptEn": reading.text(task.get("promptEn"), MAX_TEXT),
        "description": reading.text(task.get("description"), MAX_TEXT),
        "buttons": _buttons(task.get("buttons")),
    }
    for name in ("startTime", "finishTime"):
        value = task.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            outputs[name] = value
    properties = task.get("properties")
    if isinstance(properties, dict):
        kept = {
            name: reading.text(properties.get(name), MAX_TEXT)
            for name in ("finalPrompt", "finalZhPrompt")
            if isinstance(properties.get(name), str)
        }
        if kept:
            outputs["properties"] = kept
    return outputs


def _buttons(value: Any) -> list[dict[str, Any]]:
    """The task's buttons; each ``customId`` is what a follow-up action sends back."""
    buttons = []
    for item in value[:MAX_BUTTONS] if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        custom_id = item.get("customId")
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= 256:
            continue
        buttons.append(
            {
                "customId": custom_id,
                "emoji": reading.text(item.get("emoji"), 32),
                "label": reading.text(item.get("label"), 128),
                "type": _int(item.get("type")),
                "style": _int(item.get("style")),
            }
        )
    return buttons


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
