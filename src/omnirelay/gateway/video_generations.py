"""The unified video API (``/v1/video/generations``): one shape over every video channel.

A submit names ``model``, ``prompt``, and optionally ``image``, ``duration``, ``width``,
``height``, ``fps``, ``seed`` and ``n`` (1). The key's channels for the model decide the
dialect: the first candidate (highest priority) whose type serves video, OpenAI's videos
on an ``openai`` channel, Kling on a ``kling`` one. The request is translated to that
family's fields and submitted as a task of that family, so the same task reads the same
through ``/v1/video/generations/{id}`` and through its own family's API. What the unified
shape asked for is kept with the task (``stored.unified``) to render its metadata.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omnirelay.gateway import kling, videos
from omnirelay.gateway.routing import Route
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField

FAMILIES = {"openai": videos.FAMILY, "kling": kling.FAMILY}
"""The video family each channel type serves."""
OPENAI_SECONDS = (4, 8, 12)
KLING_SECONDS = (5, 10)
MAX_SIDE = 4096
MAX_FPS = 120


def family_for(candidates: list[Route], model: str) -> str:
    """The video family of the first candidate channel that serves video."""
    for route in candidates:
        family = FAMILIES.get(route.channel.type)
        if family is not None:
            return family
    raise InvalidRequest(
        f"No channel that serves '{model}' makes videos here (video channels are of type "
        f"{', '.join(sorted(FAMILIES))}).",
        param="model",
    )


def submit_request(
    family: Family,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise MissingField("Missing required parameter: 'model'.", param="model")
    unified = _unified(fields)
    if family.name == kling.FAMILY:
        request = _kling(family, model, fields, unified, idempotency_key, allow_private)
    else:
        request = _openai(family, model, fields, unified, idempotency_key, allow_private)
    return dataclasses.replace(request, stored={**request.stored, "unified": unified})


def _unified(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The unified fields that shape the video, checked."""
    found: dict[str, Any] = {}
    for name, low, high in (("duration", 1, 60), ("width", 64, MAX_SIDE),
                            ("height", 64, MAX_SIDE), ("fps", 1, MAX_FPS)):  # fmt: skip
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidType(f"Invalid type for '{name}': expected an integer.", param=name)
        if not low <= value <= high:
            raise InvalidRequest(f"'{name}' must be from {low} to {high}.", param=name)
        found[name] = value
    if (seed := fields.get("seed")) is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidType("Invalid type for 'seed': expected an integer.", param="seed")
        found["seed"] = seed
    if fields.get("n") not in (None, 1):
        raise InvalidRequest("'n' must be 1: one video per task.", param="n")
    if ("width" in found) != ("height" in found):
        raise InvalidRequest("Give 'width' and 'height' together.", param="width")
    return found


def _openai(
    family: Family,
    model: str,
    fields: Mapping[str, Any],
    unified: Mapping[str, Any],
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    native: dict[str, Any] = {"model": model, "prompt": fields.get("prompt")}
    if "duration" in unified:
        if unified["duration"] not in OPENAI_SECONDS:
            raise InvalidRequest(
                f"This model's 'duration' is one of {', '.join(map(str, OPENAI_SECONDS))}.",
                param="duration",
            )
        native["seconds"] = str(unified["duration"])
    if "width" in unified:
        size = f"{unified['width']}x{unified['height']}"
        if size not in videos.SIZES:
            raise InvalidRequest(
                f"This model makes videos of {', '.join(videos.SIZES)} (width x height).",
                param="width",
            )
        native["size"] = size
    if (image := fields.get("image")) is not None:
        native["input_reference"] = {"image_url": image}
    native.update({k: fields[k] for k in ("callback_url", "notify_hook") if k in fields})
    return videos.create_request(
        family, native, None, idempotency_key=idempotency_key, allow_private=allow_private
    )


def _kling(
    family: Family,
    model: str,
    fields: Mapping[str, Any],
    unified: Mapping[str, Any],
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    native: dict[str, Any] = {"model_name": model, "prompt": fields.get("prompt")}
    if "duration" in unified:
        if unified["duration"] not in KLING_SECONDS:
            raise InvalidRequest(
                f"This model's 'duration' is one of {', '.join(map(str, KLING_SECONDS))}.",
                param="duration",
            )
        native["duration"] = str(unified["duration"])
    if "width" in unified:
        width, height = unified["width"], unified["height"]
        native["aspect_ratio"] = "16:9" if width > height else "9:16" if height > width else "1:1"
    action = "text2video"
    if (image := fields.get("image")) is not None:
        native["image"] = image
        action = "image2video"
    native.update({k: fields[k] for k in ("callback_url", "notify_hook") if k in fields})
    return kling.submit_request(
        family, action, native, idempotency_key=idempotency_key, allow_private=allow_private
    )
