"""OpenAI's video API (``/v1/videos``) as a task family: the fields it takes, checked.

A create takes ``prompt``, ``model`` (sora-2 by default), ``seconds`` (4, 8 or 12), ``size``
and an ``input_reference`` (a file in a multipart body, or ``{image_url}``/``{file_id}`` in
a JSON one); a remix takes a ``prompt`` and works on one of the key's completed videos.
``callback_url`` (or ``notify_hook``) is the gateway's own addition: the URL it calls when
the video ends; it never goes upstream. The hold is the video's seconds at its size's price.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from omnirelay.gateway.op_checks import one_of, required_str
from omnirelay.gateway.task_fields import MAX_URL, idempotency, notify_url, request_hash
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.gateway.uploads import check_image
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidRequest, InvalidType
from omnirelay.wire.uploads import Upload

FAMILY = "openai.video"
ID_PREFIX = "video_"
ENDPOINT = "videos"
REMIX = "videos.remix"
DEFAULT_MODEL = "sora-2"
SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"
MAX_PROMPT = 32_000
MAX_MODEL = 128
NOTIFY_FIELDS = ("callback_url", "notify_hook")


def create_request(
    family: Family,
    fields: Mapping[str, Any],
    upload: Upload | None,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    """A create, from a JSON body (``upload`` None) or a multipart one."""
    prompt = _prompt(fields)
    model = fields.get("model") or DEFAULT_MODEL
    if not isinstance(model, str) or len(model) > MAX_MODEL:
        raise InvalidType("Invalid type for 'model': expected a model name.", param="model")
    seconds = _seconds(fields.get("seconds"))
    size = fields.get("size") or DEFAULT_SIZE
    one_of(size, SIZES, "size")
    params: dict[str, Any] = {"prompt": prompt, "seconds": seconds, "size": size}
    stored: dict[str, Any] = {"prompt": prompt, "seconds": seconds, "size": size}
    digest = ""
    if upload is not None and (part := upload.file("input_reference")) is not None:
        check_image(part)
        stored["input_reference"] = {"file": part.filename[:256], "bytes": part.size}
        digest = _file_digest(part.path)
    elif (reference := fields.get("input_reference")) is not None:
        params["input_reference"] = _reference(reference)
        stored["input_reference"] = _shown(params["input_reference"])
    notify = notify_url(fields, NOTIFY_FIELDS, allow_private=allow_private)
    return TaskRequest(
        family=family,
        action="create",
        model=model,
        params=params,
        stored=stored,
        upload=upload,
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash("create", model, params, notify, digest),
    )


def remix_request(
    family: Family,
    source: TaskRow,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    """A remix of the key's own completed video ``source``: same model, size and length."""
    if source.state != states.SUCCEEDED:
        raise InvalidRequest(
            "Only a completed video can be remixed; this one is not.", param="video_id"
        )
    prompt = _prompt(fields)
    shown = source.request.get("stored") or {}
    params = {
        "prompt": prompt,
        "seconds": str(shown.get("seconds") or DEFAULT_SECONDS),
        "size": str(shown.get("size") or DEFAULT_SIZE),
    }
    notify = notify_url(fields, NOTIFY_FIELDS, allow_private=allow_private)
    return TaskRequest(
        family=family,
        action="remix",
        model=source.model,
        params=params,
        stored=dict(params),
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash("remix", source.public_id, params, notify, ""),
        source=source,
    )


def error_of(task: TaskRow) -> dict[str, str] | None:
    """A video task's error as both video APIs show it (``code``, ``message``); None
    unless the task failed, was cancelled or expired."""
    if task.state not in (states.FAILED, states.CANCELLED, states.EXPIRED):
        return None
    said = task.error or {}
    return {
        "code": str(said.get("code") or task.state),
        "message": str(said.get("message") or "The video could not be generated."),
    }


def _prompt(fields: Mapping[str, Any]) -> str:
    prompt = required_str(dict(fields), "prompt")
    if len(prompt) > MAX_PROMPT:
        raise InvalidRequest(
            f"'prompt' is too long: at most {MAX_PROMPT} characters.", param="prompt"
        )
    return prompt


def _seconds(value: Any) -> str:
    if value is None:
        return DEFAULT_SECONDS
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # the spec says a string; a number is read the same
    one_of(value, SECONDS, "seconds")
    return str(value)


def _reference(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        chosen = {k: v for k, v in value.items() if k in ("image_url", "file_id") and v}
        if len(chosen) == 1 and all(isinstance(v, str) for v in chosen.values()):
            return chosen
    raise InvalidRequest(
        "'input_reference' takes exactly one of 'image_url' or 'file_id', or an image file "
        "in a multipart body.",
        param="input_reference",
    )


def _shown(reference: Mapping[str, str]) -> dict[str, str]:
    """A reference as the row keeps it: an inline image by its size only."""
    url = reference.get("image_url")
    if url is not None and (url.startswith("data:") or len(url) > MAX_URL):
        return {"image_url": f"<inline image, {len(url)} characters>"}
    return dict(reference)


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
