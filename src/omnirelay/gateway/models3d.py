"""3D models (``/task/3d/{type}``) as a task family: Tripo-style task types, checked.

A JSON body per type: ``text_to_model`` needs ``prompt``; ``image_to_model`` a ``file``
(``{type, url}``); ``multiview_to_model`` ``files`` (up to four, front, left, back, right);
``texture_model``, ``refine_model``, ``animate_rig`` and ``convert_model`` work on the
key's own earlier 3D task (``original_model_task_id``, the gateway's id) and go to that
task's channel. Options (``model_version``, ``texture``, ``pbr``, seeds, ``face_limit``...)
are checked for their type and passed on. The model routed by is ``tripo3d`` unless the body
names another; the hold is the type's price.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.gateway.task_fields import (
    idempotency,
    notify_url,
    request_hash,
    text_field,
    web_url,
)
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField

FAMILY = "task.3d"
ID_PREFIX = "t3d_"
ENDPOINT = "task.3d"
DEFAULT_MODEL = "tripo3d"
TYPES = (
    "text_to_model",
    "image_to_model",
    "multiview_to_model",
    "texture_model",
    "refine_model",
    "animate_rig",
    "convert_model",
)
FOLLOW_UPS = ("texture_model", "refine_model", "animate_rig", "convert_model")
MAX_PROMPT = 1024
MAX_NEGATIVE = 255
MAX_VIEWS = 4
IMAGE_TYPES = ("png", "jpg", "jpeg", "webp")
FORMATS = ("GLTF", "USDZ", "FBX", "OBJ", "STL", "3MF")
OPTIONS: dict[str, type] = {
    "model_version": str,
    "texture": bool,
    "pbr": bool,
    "face_limit": int,
    "model_seed": int,
    "texture_seed": int,
    "image_seed": int,
    "texture_quality": str,
    "auto_size": bool,
    "quad": bool,
    "style": str,
}


def source_id(fields: Mapping[str, Any], task_type: str) -> str | None:
    """The earlier task a follow-up works on (the gateway's id), checked for its type."""
    if task_type not in FOLLOW_UPS:
        return None
    value = fields.get("original_model_task_id")
    if not isinstance(value, str) or not value:
        raise MissingField(
            "Missing required parameter: 'original_model_task_id'.",
            param="original_model_task_id",
        )
    return value


def submit_request(
    family: Family,
    task_type: str,
    fields: Mapping[str, Any],
    source: TaskRow | None,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    params: dict[str, Any] = {}
    if source is not None and source.state != states.SUCCEEDED:
        raise InvalidRequest(
            "'original_model_task_id' must name a 3D task that succeeded.",
            param="original_model_task_id",
        )
    text_field(fields, "prompt", MAX_PROMPT, params, required=task_type == "text_to_model")
    text_field(fields, "negative_prompt", MAX_NEGATIVE, params, required=False)
    if task_type == "image_to_model":
        params["file"] = _file(fields.get("file"), "file", allow_private)
    if task_type == "multiview_to_model":
        params["files"] = _views(fields.get("files"), allow_private)
    if task_type == "convert_model":
        chosen = fields.get("format")
        if chosen not in FORMATS:
            raise InvalidRequest(f"'format' must be one of: {', '.join(FORMATS)}.", param="format")
        params["format"] = chosen
    for name, kind in OPTIONS.items():
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidType(f"Invalid type for '{name}': expected {kind.__name__}.", param=name)
        params[name] = value
    model = fields.get("model") or (source.model if source else DEFAULT_MODEL)
    if not isinstance(model, str) or len(model) > 128:
        raise InvalidType("Invalid type for 'model': expected a model name.", param="model")
    notify = notify_url(fields, allow_private=allow_private)
    subject = source.public_id if source else model
    return TaskRequest(
        family=family,
        action=task_type,
        model=model,
        params=params,
        stored=dict(params),
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash(task_type, subject, params, notify, ""),
        source=source,
    )


def _file(value: Any, name: str, allow_private: bool) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{name}' must be an object {{type, url}}.", param=name)
    kind = value.get("type")
    if kind not in IMAGE_TYPES:
        raise InvalidRequest(f"'{name}.type' must be one of: {', '.join(IMAGE_TYPES)}.", param=name)
    return {"type": kind, "url": web_url(value.get("url"), f"{name}.url", allow_private)}


def _views(value: Any, allow_private: bool) -> list[dict[str, str]]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_VIEWS:
        raise InvalidRequest(
            f"'files' must be a list of 1 to {MAX_VIEWS} images (front, left, back, right).",
            param="files",
        )
    return [_file(view, "files", allow_private) for view in value]
