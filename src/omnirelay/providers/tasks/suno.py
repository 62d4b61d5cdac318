"""A Suno relay's API (Suno-API/Suno-API, as new-api and V-API relay it) as a task dialect.

Submits are ``POST /suno/submit/music`` (inspiration: ``gpt_description_prompt``,
``make_instrumental``, ``mv``; custom: ``prompt``, ``title``, ``tags``, ``mv``; a
continuation adds ``task_id``, ``continue_at``, ``continue_clip_id``) and ``POST
/suno/submit/lyrics`` (``prompt``); each answers ``{code: "success", message, data:
"<task_id>"}``, and any other code refuses the task. Tasks are polled ``POST /suno/fetch
{ids}``, up to 50 at a time: ``{code, data: [task]}``, each ``{task_id, action (MUSIC,
LYRICS), status (NOT_START, SUBMITTED, QUEUED, IN_PROGRESS, SUCCESS, FAILURE, UNKNOWN),
fail_reason, submit_time, start_time, finish_time, progress, data}``. A music task's data
are its clips (``{id, title, status, metadata, audio_url, image_url, video_url,
model_name}``; a clip is ``complete`` or ``error``), and the relay says FAILURE when one
clip of two failed: the gateway keeps the clip that was made and charges for it alone. A
lyrics task's data is ``{id, status, title, text}``. Auth is ``Authorization: Bearer``.
Billed per clip made (``music``, two a submit) and per lyrics (``lyrics``), from
``task_actions``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
from omnirelay.wire.errors import GatewayError, UpstreamClientError, UpstreamError, clean

MAX_BATCH = 50
CLIPS_PER_SUBMIT = 2
"""A music submit makes two clips; its hold is two clips' price."""
MUSIC, LYRICS = "music", "lyrics"
STATUSES = {
    "NOT_START": QUEUED,
    "SUBMITTED": QUEUED,
    "QUEUED": QUEUED,
    "IN_PROGRESS": RUNNING,
    "SUCCESS": SUCCEEDED,
    "FAILURE": FAILED,
    "UNKNOWN": FAILED,  # the relay's "done, but it cannot say how": nothing to deliver
}
SENT_FIELDS = {
    MUSIC: (
        "gpt_description_prompt",
        "make_instrumental",
        "mv",
        "prompt",
        "title",
        "tags",
        "continue_at",
        "continue_clip_id",
    ),
    LYRICS: ("prompt",),
}
CLIP_FILES = (("audio", "audio_url", True), ("image", "image_url", False))
VIDEO = ("video", "video_url", False)
MAX_ID = 128
MAX_CLIPS = 8
MAX_TEXT = 20_000
MAX_SHORT = 500
MAX_URL = 4096
BACKOFF = 1.5


class SunoRefused(UpstreamClientError, SubmitRefusal):
    """A submit the relay answered with another code than ``success``: the client hears
    the relay's ``code`` and ``message``, beside the gateway's ``error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(400, f"Suno refused the task ({code}): {message}", error={"code": code})
        self.said = {"code": code, "message": message, "data": None}

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.said["code"], self.said["message"]), self.__dict__

    def body(self) -> dict[str, Any]:
        return {**self.said, **super().body()}


def clip_file(index: int, kind: str) -> str:
    """The name a clip's stored file goes by (``clip0-audio``)."""
    return f"clip{index}-{kind}"


class SunoRelay:
    max_batch = MAX_BATCH

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        message = str(error_object(payload).get("message") or "")
        failure = UpstreamFailure(status, message, bad_credentials=status in (401, 403))
        return error_for(failure, retry_after)

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        params = submission.params
        kind = LYRICS if submission.action == LYRICS else MUSIC
        body = {name: params[name] for name in SENT_FIELDS[kind] if params.get(name) is not None}
        if submission.source_upstream_id is not None:
            body["task_id"] = submission.source_upstream_id
        return self._post(endpoint, f"/suno/submit/{kind}", body)

    def submit_response(self, payload: bytes) -> TaskStatus:
        body = _object(payload)
        code = body.get("code")
        if code != "success":
            said = body.get("message")
            message = clean(said) if isinstance(said, str) and said else "no reason given"
            raise SunoRefused(str(code)[:64] if code is not None else "unknown", message)
        task_id = body.get("data")
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_ID:
            raise UpstreamError("The Suno relay accepted a task but gave no task id.")
        return TaskStatus(
            state=QUEUED, upstream_status="SUBMITTED", progress=0, upstream_id=task_id
        )

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        return self._post(endpoint, "/suno/fetch", {"ids": list(upstream_ids)})

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        data = _object(payload).get("data")
        if not isinstance(data, list):
            raise UpstreamError("The Suno relay's fetch answer has no task list.")
        asked = set(upstream_ids)
        found: dict[str, TaskStatus] = {}
        for item in data:
            try:
                status = task_status(item)
            except UpstreamError:
                continue
            if status.upstream_id in asked:
                found[status.upstream_id] = status
        return found

    def find_request(self, endpoint: Endpoint) -> None:
        return None  # the relay lists no tasks: an unanswered submit is released in time

    def find_response(
        self, payload: bytes, submission: Submission, upstream_model: str, since_s: int
    ) -> list[TaskStatus]:
        return []

    def cancel_request(self, endpoint: Endpoint, upstream_id: str) -> None:
        return None  # the relay cannot cancel: the gateway only stops polling

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        return [
            Asset(name, UpstreamRequest("GET", url, {}, b""), required=name.endswith("-audio"))
            for name, url in status.files.items()
        ]

    def hold_units(self, submission: Submission) -> Billable:
        if submission.action == LYRICS:
            return Billable("task_action", LYRICS, 1)
        return Billable("task_action", MUSIC, CLIPS_PER_SUBMIT)

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        if submission.action == LYRICS:
            return Billable("task_action", LYRICS, 1)
        clips = status.outputs.get("clips") or []
        made = sum(1 for clip in clips if clip.get("status") == "complete")
        return Billable("task_action", MUSIC, made)

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return float(min(min_s * BACKOFF ** min(unchanged_polls, 32), max_s))

    def _post(self, endpoint: Endpoint, path: str, body: Mapping[str, Any]) -> UpstreamRequest:
        headers = {
            "Authorization": f"Bearer {endpoint.api_key}",
            "Content-Type": "application/json",
        }
        url = endpoint.base_url.rstrip("/") + path
        return UpstreamRequest("POST", url, {**headers, **endpoint.headers}, orjson.dumps(body))


def _object(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The Suno relay's answer is not JSON.") from exc
    if not isinstance(body, dict):
        raise UpstreamError("The Suno relay's answer is not an object.")
    return body


def task_status(task: Any) -> TaskStatus:
    """A relay's task object, read as data: every field checked before use."""
    if not isinstance(task, dict):
        raise UpstreamError("The Suno relay's task is not an object.")
    upstream_id = task.get("task_id")
    if not isinstance(upstream_id, str) or not 0 < len(upstream_id) <= MAX_ID:
        raise UpstreamError("The Suno relay's task has no usable id.")
    raw = task.get("status")
    word = raw[:64] if isinstance(raw, str) and raw else "UNKNOWN"
    state = STATUSES.get(word, RUNNING)  # an unknown status is not an end: poll again
    lyrics = str(task.get("action") or "").upper() == "LYRICS"
    progress = reading.progress(task.get("progress"))
    if state not in (SUCCEEDED, FAILED):
        return TaskStatus(state, word, progress, upstream_id)
    if lyrics:
        return _lyrics_end(upstream_id, word, state, task)
    return _music_end(upstream_id, word, task)


def _music_end(upstream_id: str, word: str, task: Mapping[str, Any]) -> TaskStatus:
    """A music task the relay ended: succeeded when at least one clip was made (the rest
    are shown with their errors), failed when none was."""
    clips: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    raw = task.get("data")
    for item in raw[:MAX_CLIPS] if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        index, clip = len(clips), _clip(item)
        if clip["status"] == "complete":
            urls = {kind: _url(item.get(key)) for kind, key, _ in (*CLIP_FILES, VIDEO)}
            if urls["audio"] is None:
                clip["status"] = "error"  # "complete" without audio is nothing to deliver
                clip["metadata"]["error_message"] = "The clip came without its audio."
            else:
                files.update({clip_file(index, kind): url for kind, url in urls.items() if url})
        clips.append(clip)
    made = sum(1 for clip in clips if clip["status"] == "complete")
    reason = _fail_reason(task, clips)
    if made == 0:
        error = {"code": "suno_failure", "message": reason or "Suno made no clip."}
        return TaskStatus(FAILED, word, 100, upstream_id, error=error)
    outputs: dict[str, Any] = {"action": "MUSIC", "clips": clips}
    if made < len(clips):
        outputs["fail_reason"] = reason or f"{len(clips) - made} of {len(clips)} clips failed."
    return TaskStatus(SUCCEEDED, word, 100, upstream_id, outputs=outputs, files=files)


def _lyrics_end(upstream_id: str, word: str, state: str, task: Mapping[str, Any]) -> TaskStatus:
    data = task.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    if state == FAILED or not isinstance(text, str) or not text:
        reason = _fail_reason(task, [])
        error = {"code": "suno_failure", "message": reason or "Suno wrote no lyrics."}
        return TaskStatus(FAILED, word, 100, upstream_id, error=error)
    assert isinstance(data, dict)
    lyrics = {
        "id": reading.text(data.get("id"), MAX_ID) or upstream_id,
        "status": reading.text(data.get("status"), 32) or "complete",
        "title": reading.text(data.get("title"), MAX_SHORT),
        "text": text[:MAX_TEXT],
    }
    return TaskStatus(
        SUCCEEDED, word, 100, upstream_id, outputs={"action": "LYRICS", "lyrics": lyrics}
    )


def _clip(item: Mapping[str, Any]) -> dict[str, Any]:
    """What the gateway keeps of a clip to show it (its files are stored apart)."""
    said = item.get("metadata")
    metadata = said if isinstance(said, dict) else {}
    duration = metadata.get("duration")
    status = reading.text(item.get("status"), 32)
    return {
        "id": reading.text(item.get("id"), MAX_ID),
        "title": reading.text(item.get("title"), MAX_SHORT),
        "status": "complete" if status == "complete" else "error",
        "model_name": reading.text(item.get("model_name"), 64),
        "metadata": {
            "tags": reading.text(metadata.get("tags"), MAX_SHORT),
            "prompt": reading.text(metadata.get("prompt"), MAX_TEXT),
            "gpt_description_prompt": reading.text(
                metadata.get("gpt_description_prompt"), MAX_TEXT
            ),
            "duration": duration
            if isinstance(duration, (int, float)) and not isinstance(duration, bool)
            else None,
            "error_message": clean(reading.text(metadata.get("error_message"), MAX_SHORT)) or None,
        },
    }


def _fail_reason(task: Mapping[str, Any], clips: list[dict[str, Any]]) -> str:
    reason = reading.text(task.get("fail_reason"), MAX_SHORT)
    if not reason:
        reason = next(
            (c["metadata"]["error_message"] for c in clips if c["metadata"]["error_message"]), ""
        )
    return clean(reason) if reason else ""


def _url(value: Any) -> str | None:
    if (
        isinstance(value, str)
        and value.startswith(("http://", "https://"))
        and len(value) <= MAX_URL
    ):
        return value
    return None
