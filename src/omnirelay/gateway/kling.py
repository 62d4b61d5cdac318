"""Kling's video API (``/kling/v1/videos/...``) as a task family: its fields, checked.

``text2video`` takes ``model_name`` (``kling-v1`` by default), ``prompt`` (up to 2500
characters), ``negative_prompt``, ``cfg_scale`` (0 to 1), ``mode`` (``std``, ``pro``),
``aspect_ratio`` (16:9, 9:16, 1:1), ``duration`` (5 or 10 seconds) and ``camera_control``;
``image2video`` also ``image`` and ``image_tail`` (a URL, or base64 without a ``data:``
prefix; one at least). ``callback_url`` is the gateway's. The hold is the video's seconds
at its mode's price.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from omnirelay.gateway.task_fields import idempotency, notify_url, request_hash, text_field
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField

FAMILY = "kling.video"
ID_PREFIX = "kling_"
ENDPOINT = "kling.videos"
ACTIONS = ("text2video", "image2video")
DEFAULT_MODEL = "kling-v1"
MAX_PROMPT = 2500
MAX_IMAGE_CHARS = 14 * 1024 * 1024  # 10 MB, base64-encoded
MAX_CAMERA_BYTES = 2048
MODES = ("std", "pro")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
DURATIONS = ("5", "10")


def submit_request(
    family: Family,
    action: str,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    params: dict[str, Any] = {}
    text_field(fields, "prompt", MAX_PROMPT, params, required=action == "text2video")
    text_field(fields, "negative_prompt", MAX_PROMPT, params, required=False)
    if (cfg := fields.get("cfg_scale")) is not None:
        if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not 0 <= cfg <= 1:
            raise InvalidRequest("'cfg_scale' must be a number from 0 to 1.", param="cfg_scale")
        params["cfg_scale"] = cfg
    _choice(fields, "mode", MODES, params)
    _choice(fields, "aspect_ratio", ASPECT_RATIOS, params)
    duration = fields.get("duration")
    if isinstance(duration, int) and not isinstance(duration, bool):
        duration = str(duration)  # Kling's is a string; a number is read the same
    _choice({"duration": duration}, "duration", DURATIONS, params)
    if (camera := fields.get("camera_control")) is not None:
        if not isinstance(camera, dict) or len(orjson.dumps(camera)) > MAX_CAMERA_BYTES:
            raise InvalidRequest("'camera_control' must be an object.", param="camera_control")
        params["camera_control"] = camera
    if action == "image2video":
        for name in ("image", "image_tail"):
            _image(fields, name, params)
        if "image" not in params and "image_tail" not in params:
            raise MissingField("Missing required parameter: 'image'.", param="image")
    model = fields.get("model_name") or DEFAULT_MODEL
    if not isinstance(model, str) or len(model) > 128:
        raise InvalidType(
            "Invalid type for 'model_name': expected a model name.", param="model_name"
        )
    notify = notify_url(fields, allow_private=allow_private)
    stored = {k: v for k, v in params.items() if k not in ("image", "image_tail")}
    stored.update({k: _shown(v) for k, v in params.items() if k in ("image", "image_tail")})
    return TaskRequest(
        family=family,
        action=action,
        model=model,
        params=params,
        stored=stored,
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash(action, model, params, notify, ""),
    )


def _choice(
    fields: Mapping[str, Any], name: str, allowed: tuple[str, ...], params: dict[str, Any]
) -> None:
    value = fields.get(name)
    if value is None:
        return
    if value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of: {', '.join(allowed)}.", param=name)
    params[name] = value


def _image(fields: Mapping[str, Any], name: str, params: dict[str, Any]) -> None:
    value = fields.get(name)
    if value is None or value == "":
        return
    if not isinstance(value, str) or len(value) > MAX_IMAGE_CHARS:
        raise InvalidRequest(
            f"'{name}' must be an image URL, or base64 of at most 10 MB.", param=name
        )
    if value.startswith("data:"):
        raise InvalidRequest(
            f"'{name}' takes base64 without a 'data:' prefix, as Kling does.", param=name
        )
    params[name] = value


def _shown(value: str) -> str:
    """An image as the row shows it: a URL, or inline base64 by its size only."""
    if value.startswith(("http://", "https://")) and len(value) <= 2048:
        return value
    return f"<inline image, {len(value)} characters>"
