"""Midjourney through midjourney-proxy's API as a task family: the fields each submit
takes, checked, and the follow-ups that make no task of their own.

New tasks are ``imagine`` (``prompt``, ``botType``, ``base64Array``), ``blend``
(``base64Array`` of 2 to 5 images, ``dimensions``), ``describe`` (``base64``),
``shorten`` (``prompt``) and a face swap (``sourceBase64``, ``targetBase64``). Actions
on one of the key's own finished tasks (``action`` with one of its buttons' ``customId``,
``change`` with UPSCALE / VARIATION / REROLL and an ``index``, ``simple-change`` with
``"<taskId> U1"``) go to that task's channel, where its images live. Each task is charged
its action's price (``task_actions`` of the model ``midjourney``: ``imagine``,
``upscale``, ``variation``, ...). A task waiting in ``MODAL`` is answered on its channel
(``answer_modal``) and goes on as the same task, charged once at its own action's price,
as midjourney-proxy keeps one task id through the modal. ``notifyHook`` is the gateway's
to call when the task ends; ``state`` is the client's, kept and shown back; neither goes
upstream, nor do the inline images stay in the row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from omnirelay.gateway.op_checks import one_of, optional_str, required_str
from omnirelay.gateway.task_fields import idempotency, notify_url, request_hash
from omnirelay.gateway.tasks.engine import TaskEngine
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.providers.tasks.base import TaskStatus
from omnirelay.providers.tasks.midjourney import MidjourneyProxy
from omnirelay.providers.tasks.registry import MIDJOURNEY
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidRequest, InvalidType, UpstreamError
from omnirelay.wire.media import IMAGE_TYPES, parse_data_url

FAMILY = MIDJOURNEY
ID_PREFIX = "mj_"
ENDPOINT = "midjourney"
MODEL = "midjourney"
BOT_TYPES = ("MID_JOURNEY", "NIJI_JOURNEY")
DIMENSIONS = ("PORTRAIT", "SQUARE", "LANDSCAPE")
CHANGES = {"UPSCALE": "upscale", "VARIATION": "variation", "REROLL": "reroll"}
CHANGEABLE = ("imagine", "variation", "reroll", "blend")
"""The actions whose four images a change works on, as midjourney-proxy allows."""
NOTIFY_FIELDS = ("notifyHook",)
MAX_PROMPT = 8192
MAX_STATE = 1024
MAX_CUSTOM_ID = 256
BLEND_IMAGES = (2, 5)
CUSTOM_ID_ACTIONS = (
    ("MJ::JOB::upsample::", "upscale"),
    ("MJ::JOB::upsample_", "upscale"),
    ("MJ::JOB::variation::", "variation"),
    ("MJ::JOB::high_variation::", "high_variation"),
    ("MJ::JOB::low_variation::", "low_variation"),
    ("MJ::JOB::reroll::", "reroll"),
    ("MJ::JOB::pan_", "pan"),
    ("MJ::Outpaint::", "zoom"),
    ("MJ::CustomZoom::", "custom_zoom"),
    ("MJ::Inpaint::", "inpaint"),
)
"""A button's ``customId`` prefix, and the action it is priced as (new-api's names);
any other button is priced as ``action``."""


def imagine_request(
    family: Family, fields: Mapping[str, Any], *, idempotency_key: str | None, allow_private: bool
) -> TaskRequest:
    prompt = _prompt(fields)
    images = _images(fields, "base64Array", optional=True)
    params = {"submit": "imagine", "prompt": prompt, "botType": _bot_type(fields)}
    inline = {"base64Array": images} if images else {}
    return _new(family, "imagine", params, inline, fields, f"/imagine {prompt}",
                idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def shorten_request(
    family: Family, fields: Mapping[str, Any], *, idempotency_key: str | None, allow_private: bool
) -> TaskRequest:
    prompt = _prompt(fields)
    params = {"submit": "shorten", "prompt": prompt, "botType": _bot_type(fields)}
    return _new(family, "shorten", params, {}, fields, f"/shorten {prompt}",
                idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def describe_request(
    family: Family, fields: Mapping[str, Any], *, idempotency_key: str | None, allow_private: bool
) -> TaskRequest:
    image = _image(fields, "base64")
    params = {"submit": "describe", "botType": _bot_type(fields)}
    return _new(family, "describe", params, {"base64": image}, fields, "/describe",
                idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def blend_request(
    family: Family, fields: Mapping[str, Any], *, idempotency_key: str | None, allow_private: bool
) -> TaskRequest:
    images = _images(fields, "base64Array", optional=False)
    low, high = BLEND_IMAGES
    if not low <= len(images) <= high:
        raise InvalidRequest(
            f"'base64Array' takes {low} to {high} images to blend.", param="base64Array"
        )
    dimensions = fields.get("dimensions") or "SQUARE"
    one_of(dimensions, DIMENSIONS, "dimensions")
    params = {"submit": "blend", "dimensions": dimensions, "botType": _bot_type(fields)}
    return _new(family, "blend", params, {"base64Array": images}, fields,
                f"/blend {len(images)} images", idempotency_key=idempotency_key,
                allow_private=allow_private)  # fmt: skip


def swap_face_request(
    family: Family, fields: Mapping[str, Any], *, idempotency_key: str | None, allow_private: bool
) -> TaskRequest:
    inline = {name: _image(fields, name) for name in ("sourceBase64", "targetBase64")}
    return _new(family, "swap_face", {"submit": "swap_face"}, inline, fields, "/swap_face",
                idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def action_request(
    family: Family,
    source: TaskRow,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    """A button pressed on one of the key's finished tasks: its ``customId`` must be one
    of that task's buttons (any other could name another account's image)."""
    custom_id = required_str(dict(fields), "customId")
    _finished(source)
    buttons = ((source.result or {}).get("outputs") or {}).get("buttons") or []
    if len(custom_id) > MAX_CUSTOM_ID or custom_id not in {b.get("customId") for b in buttons}:
        raise InvalidRequest(
            "'customId' is not one of the task's buttons; use a customId from its 'buttons'.",
            param="customId",
        )
    action = next((a for prefix, a in CUSTOM_ID_ACTIONS if custom_id.startswith(prefix)), "action")
    params = {"submit": "action", "customId": custom_id}
    return _follow_up(family, source, action, params, fields, f"/action {custom_id}",
                      idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def change_request(
    family: Family,
    source: TaskRow,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    """UPSCALE, VARIATION (``index`` 1 to 4) or REROLL of one of the key's grids."""
    change = required_str(dict(fields), "action")
    one_of(change, tuple(CHANGES), "action")
    index = fields.get("index")
    if change != "REROLL" and (
        isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= 4
    ):
        raise InvalidRequest("'index' must be 1, 2, 3 or 4.", param="index")
    return _change(family, source, change, index if change != "REROLL" else None, fields,
                   idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def simple_change_task(fields: Mapping[str, Any]) -> tuple[str, str]:
    """``content`` read as ``"<taskId> U1"`` (U or V and 1 to 4, or R): the task's id and
    the change."""
    content = required_str(dict(fields), "content")
    parts = content.split()
    code = parts[1].upper() if len(parts) == 2 else ""
    if not (code == "R" or (len(code) == 2 and code[0] in "UV" and code[1] in "1234")):
        raise InvalidRequest(
            "'content' is '<taskId> U1' to 'U4', 'V1' to 'V4', or 'R'.", param="content"
        )
    return parts[0], code


def simple_change_request(
    family: Family,
    source: TaskRow,
    code: str,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    change = {"U": "UPSCALE", "V": "VARIATION", "R": "REROLL"}[code[0]]
    index = int(code[1]) if len(code) == 2 else None
    return _change(family, source, change, index, fields, simple=code,
                   idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


async def answer_modal(
    engine: TaskEngine, task: TaskRow, fields: Mapping[str, Any]
) -> tuple[TaskRow, TaskStatus]:
    """Send the answer (``prompt``, ``maskBase64``) of a task waiting in ``MODAL`` to its
    channel; the task goes on (under the id the upstream answers with). The task, and
    what the upstream said (``outputs``: its ``code`` and ``description``)."""
    if not task.active or task.upstream_status != "MODAL":
        raise InvalidRequest(
            "This task is not waiting for a modal (its status is not MODAL).", param="taskId"
        )
    prompt = optional_str(dict(fields), "prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT:
        raise InvalidRequest(f"'prompt' has at most {MAX_PROMPT} characters.", param="prompt")
    mask = _image(fields, "maskBase64") if fields.get("maskBase64") else None
    answer = {"prompt": prompt or None, "maskBase64": mask}
    dialect, said = await engine.follow_up(
        task,
        lambda d, endpoint, upstream_id: _proxy(d).modal_request(endpoint, upstream_id, answer),
    )
    if said.status >= 400:
        raise dialect.error(said.status, said.payload, said.retry_after)
    status = _proxy(dialect).modal_response(said.payload)
    return await engine.resumed(task, status.upstream_id), status


async def image_seed(engine: TaskEngine, task: TaskRow) -> dict[str, Any]:
    """``{code, description, result}``: the seed of a finished task's image, read from its
    channel."""
    _finished(task)
    dialect, said = await engine.follow_up(
        task, lambda d, endpoint, upstream_id: _proxy(d).seed_request(endpoint, upstream_id)
    )
    if said.status >= 400:
        raise dialect.error(said.status, said.payload, said.retry_after)
    return _proxy(dialect).seed_response(said.payload)


def _change(
    family: Family,
    source: TaskRow,
    change: str,
    index: int | None,
    fields: Mapping[str, Any],
    *,
    simple: str | None = None,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    _finished(source)
    if source.action not in CHANGEABLE:
        raise InvalidRequest(
            f"A {source.action} task's images cannot be changed; use its buttons instead.",
            param="taskId",
        )
    label = "R" if change == "REROLL" else f"{change[0]}{index}"
    if simple is not None:
        params: dict[str, Any] = {"submit": "simple-change", "change": simple}
    else:
        params = {"submit": "change", "action": change, "index": index}
    return _follow_up(family, source, CHANGES[change], params, fields,
                      f"/up {source.public_id} {label}", idempotency_key=idempotency_key,
                      allow_private=allow_private)  # fmt: skip


def _new(
    family: Family,
    action: str,
    params: dict[str, Any],
    inline: dict[str, Any],
    fields: Mapping[str, Any],
    description: str,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    return _request(family, None, action, params, inline, fields, description,
                    idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def _follow_up(
    family: Family,
    source: TaskRow,
    action: str,
    params: dict[str, Any],
    fields: Mapping[str, Any],
    description: str,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    shown = source.request.get("stored") or {}
    params = {**params, "prompt": shown.get("prompt") or ""}
    return _request(family, source, action, params, {}, fields, description,
                    idempotency_key=idempotency_key, allow_private=allow_private)  # fmt: skip


def _request(
    family: Family,
    source: TaskRow | None,
    action: str,
    params: dict[str, Any],
    inline: dict[str, Any],
    fields: Mapping[str, Any],
    description: str,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    state = optional_str(dict(fields), "state")
    if state is not None and len(state) > MAX_STATE:
        raise InvalidRequest(f"'state' has at most {MAX_STATE} characters.", param="state")
    notify = notify_url(fields, NOTIFY_FIELDS, allow_private=allow_private)
    stored = {
        "prompt": params.get("prompt") or "",
        "botType": params.get("botType") or _source_bot(source),
        "state": state,
        "description": description[:MAX_PROMPT],
    }
    digest = hashlib.sha256(repr(sorted(inline.items())).encode()).hexdigest() if inline else ""
    subject = source.public_id if source is not None else MODEL
    return TaskRequest(
        family=family,
        action=action,
        model=source.model if source is not None else MODEL,
        params=params,
        stored=stored,
        inline=inline,
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash(action, subject, {**params, "state": state}, notify, digest),
        source=source,
    )


def _finished(source: TaskRow) -> None:
    if source.state != states.SUCCEEDED:
        raise InvalidRequest(
            "Only a task that succeeded can be acted on; this one has not.", param="taskId"
        )


def _source_bot(source: TaskRow | None) -> str:
    shown = (source.request.get("stored") or {}) if source is not None else {}
    bot = shown.get("botType")
    return bot if bot in BOT_TYPES else BOT_TYPES[0]


def _prompt(fields: Mapping[str, Any]) -> str:
    prompt = required_str(dict(fields), "prompt").strip()
    if not prompt:
        raise InvalidRequest("'prompt' must not be blank.", param="prompt")
    if len(prompt) > MAX_PROMPT:
        raise InvalidRequest(f"'prompt' has at most {MAX_PROMPT} characters.", param="prompt")
    return prompt


def _bot_type(fields: Mapping[str, Any]) -> str:
    bot = fields.get("botType") or BOT_TYPES[0]
    one_of(bot, BOT_TYPES, "botType")
    return str(bot)


def _images(fields: Mapping[str, Any], name: str, *, optional: bool) -> list[str]:
    value = fields.get(name)
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise InvalidType(f"'{name}' must be a list of base64 images.", param=name)
    return [_data_url(item, name) for item in value]


def _image(fields: Mapping[str, Any], name: str) -> str:
    return _data_url(required_str(dict(fields), name), name)


def _data_url(value: Any, name: str) -> str:
    """An image as a ``data:image/...;base64,`` URL, its bytes decodable."""
    parsed = parse_data_url(value) if isinstance(value, str) else None
    if parsed is None or parsed[0] not in IMAGE_TYPES:
        types = ", ".join(sorted(IMAGE_TYPES))
        raise InvalidRequest(
            f"'{name}' takes images as data URLs ('data:image/png;base64,...'; {types}).",
            param=name,
        )
    try:
        base64.b64decode(parsed[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"'{name}' holds an image that is not valid base64.", param=name
        ) from exc
    return str(value)


def _proxy(dialect: object) -> MidjourneyProxy:
    if not isinstance(dialect, MidjourneyProxy):
        raise UpstreamError("The task's channel does not speak midjourney-proxy's API.")
    return dialect
