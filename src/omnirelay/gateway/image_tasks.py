"""Image processing (``/task/pic/...``) as a task family: each path's fields, checked.

Every submit is a form (multipart or urlencoded) with the source image as ``image_file``
or ``image_url`` (``file`` or ``url`` for ``watermark_auto``) and the path's own fields;
``sync`` and ``callback_url`` are the gateway's (it waits, it calls back) and never go
upstream. The model is ``picwish`` unless the form names another; the hold is the action's
price (backgrounds: per image of ``batch_size``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from omnirelay.gateway.task_fields import (
    file_digest,
    idempotency,
    notify_url,
    request_hash,
    web_url,
)
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.gateway.uploads import check_image
from omnirelay.wire.errors import InvalidRequest, MissingField
from omnirelay.wire.uploads import Upload

FAMILY = "task.pic"
ID_PREFIX = "pic_"
ENDPOINT = "task.pic"
DEFAULT_MODEL = "picwish"
MAX_MODEL = 128
MAX_TEXT = 1024
MAX_RECTANGLES = 50
HEX_COLOR = re.compile(r"[0-9A-Fa-f]{6}")
ID_SIZE = re.compile(r"(\d{3,4})x(\d{3,4})")
OCR_LANGUAGE = re.compile(r"[A-Za-z]+(,[A-Za-z]+){0,9}")


@dataclass(frozen=True, slots=True)
class Fields:
    """One path's fields: ``choices`` are checked against their values, ``texts`` kept as
    they are (bounded), ``source`` names the image's file and URL fields."""

    choices: Mapping[str, tuple[str, ...]]
    texts: tuple[str, ...] = ()
    source: tuple[str, str] = ("image_file", "image_url")


ACTIONS: dict[str, Fields] = {
    "segmentation": Fields(
        {
            "type": ("person", "object", "stamp"),
            "output_type": ("1", "2", "3"),
            "crop": ("0", "1"),
            "format": ("png", "jpg"),
        },
        ("bg_color",),
    ),
    "scale": Fields({"type": ("clean", "face"), "scale_factor": ("auto", "1", "2", "4")}),
    "background": Fields({"batch_size": ("1", "2", "3", "4")}, ("prompt", "negative_prompt")),
    "watermark_auto": Fields({}, (), ("file", "url")),
    "watermark": Fields({}, ("rectangles",)),
    "ocr": Fields({"format": ("txt", "pdf", "docx", "xlsx", "pptx")}, ("language", "password")),
    "idphoto": Fields({"format": ("png", "jpg")}, ("size", "bg_color")),
    "colorization": Fields({"format": ("jpg", "jpeg", "png", "webp")}),
}
GATEWAY_FIELDS = ("sync", "callback_url", "notify_hook", "model")


def submit_request(
    family: Family,
    action: str,
    form: Upload,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    """A ``/task/pic/{action}`` submit from its form (its files spooled to disk)."""
    spec = ACTIONS[action]
    fields = dict(form.fields)
    params: dict[str, Any] = {}
    for name, allowed in spec.choices.items():
        value = fields.get(name)
        if value not in (None, ""):
            if value not in allowed:
                choices = ", ".join(allowed)
                raise InvalidRequest(f"'{name}' must be one of: {choices}.", param=name)
            params[name] = value
    for name in spec.texts:
        value = fields.get(name)
        if value not in (None, ""):
            if len(value) > MAX_TEXT:
                raise InvalidRequest(f"'{name}' is longer than {MAX_TEXT} characters.", param=name)
            params[name] = value
    _check_action(action, params)
    files, digests = _sources(action, spec, form, fields, params, allow_private)
    model = fields.get("model") or DEFAULT_MODEL
    if len(model) > MAX_MODEL:
        raise InvalidRequest("'model' is too long.", param="model")
    notify = notify_url(fields, allow_private=allow_private)
    stored = {**{k: v for k, v in params.items() if k != "password"}, "sync": _sync(fields)}
    stored.update({part.name: {"file": part.filename[:256], "bytes": part.size} for part in files})
    return TaskRequest(
        family=family,
        action=action,
        model=model,
        params=params,
        stored=stored,
        upload=Upload([], files) if files else None,
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash(action, model, params, notify, ",".join(digests)),
    )


def wants_sync(form: Upload) -> bool:
    return _sync(dict(form.fields))


def _sync(fields: Mapping[str, str]) -> bool:
    value = fields.get("sync") or "0"
    if value not in ("0", "1"):
        raise InvalidRequest("'sync' must be 0 or 1.", param="sync")
    return value == "1"


def _check_action(action: str, params: dict[str, Any]) -> None:
    if "bg_color" in params and not HEX_COLOR.fullmatch(params["bg_color"]):
        raise InvalidRequest("'bg_color' must be a hex color such as FFFFFF.", param="bg_color")
    if action == "background":
        if "prompt" not in params:
            raise MissingField("Missing required parameter: 'prompt'.", param="prompt")
        params.setdefault("batch_size", "2")  # the upstream's default, made explicit: billed
    if action == "idphoto" and "size" in params:
        size = ID_SIZE.fullmatch(params["size"])
        if size is None or not all(100 <= int(side) <= 2000 for side in size.groups()):
            raise InvalidRequest(
                "'size' must be WIDTHxHEIGHT, each between 100 and 2000 pixels.", param="size"
            )
    if action == "ocr" and "language" in params and not OCR_LANGUAGE.fullmatch(params["language"]):
        raise InvalidRequest(
            "'language' is a comma-separated list of up to 10 languages.", param="language"
        )
    if action == "ocr" and len(params.get("password", "")) > 32:
        raise InvalidRequest("'password' has at most 32 characters.", param="password")
    if "rectangles" in params:
        params["rectangles"] = _rectangles(params["rectangles"])


def _rectangles(value: str) -> str:
    try:
        rectangles = orjson.loads(value)
    except orjson.JSONDecodeError:
        rectangles = None
    fields = ("x", "y", "width", "height")
    if (
        not isinstance(rectangles, list)
        or not 0 < len(rectangles) <= MAX_RECTANGLES
        or not all(
            isinstance(r, dict) and all(isinstance(r.get(k), int) and r[k] >= 0 for k in fields)
            for r in rectangles
        )
    ):
        raise InvalidRequest(
            "'rectangles' must be a JSON list of 1 to 50 {x, y, width, height} integers.",
            param="rectangles",
        )
    return orjson.dumps([{k: r[k] for k in fields} for r in rectangles]).decode()


def _sources(
    action: str,
    spec: Fields,
    form: Upload,
    fields: Mapping[str, str],
    params: dict[str, Any],
    allow_private: bool,
) -> tuple[list[Any], list[str]]:
    """The source image (and a watermark's mask): one file or one URL each."""
    wanted = [spec.source]
    if action == "watermark":
        wanted.append(("mask_file", "mask_url"))
    files = []
    digests = []
    for file_field, url_field in wanted:
        part = form.file(file_field)
        url = fields.get(url_field) or None
        if file_field == "mask_file" and "rectangles" in params and (part or url):
            raise InvalidRequest(
                "Mark what to remove with one of 'mask_file', 'mask_url' or 'rectangles'.",
                param="rectangles",
            )
        if part is not None and url is not None:
            raise InvalidRequest(
                f"Send either '{file_field}' or '{url_field}', not both.", param=url_field
            )
        if part is not None:
            if action != "ocr":  # OCR also reads PDFs and office files
                check_image(part)
            files.append(part)
            digests.append(file_digest(part.path))
        elif url is not None:
            params[url_field] = web_url(url, url_field, allow_private)
        elif file_field == "mask_file" and "rectangles" in params:
            continue
        elif file_field == "mask_file":
            raise MissingField(
                "Mark what to remove with 'mask_file', 'mask_url' or 'rectangles'.",
                param="rectangles",
            )
        else:
            raise MissingField(
                f"Missing the image: send '{file_field}' or '{url_field}'.", param=file_field
            )
    return files, digests
