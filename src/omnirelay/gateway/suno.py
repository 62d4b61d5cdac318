"""Suno through a relay's API as a task family: the fields of music and lyrics, checked.

Music comes in three modes. Inspiration: ``gpt_description_prompt`` (with
``make_instrumental`` and ``mv``). Custom: ``prompt`` (the lyrics), ``title``, ``tags``,
``mv``. Continuation: either, plus ``task_id`` (one of the key's music tasks that
succeeded), ``continue_clip_id`` (one of that task's clips) and ``continue_at`` (seconds
into it); it goes to that task's channel, where the clip lives. Lyrics take a ``prompt``.
``notify_hook`` is the gateway's to call when the task ends and never goes upstream.
Music is priced per clip made (``task_actions.music`` of the model ``suno``: a submit
holds two clips' price), lyrics per task (``task_actions.lyrics``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.gateway.op_checks import optional_bool, optional_str, required_str
from omnirelay.gateway.task_fields import idempotency, notify_url, request_hash
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.providers.tasks.registry import SUNO
from omnirelay.providers.tasks.suno import LYRICS, MUSIC
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidRequest, InvalidType

FAMILY = SUNO
ID_PREFIX = "suno_"
ENDPOINT = "suno"
MODEL = "suno"
NOTIFY_FIELDS = ("notify_hook",)
TEXT_FIELDS = {"gpt_description_prompt": 3000, "prompt": 5000, "title": 200, "tags": 1000}
MAX_MV = 64
MAX_CONTINUE_AT_S = 3600.0


def continued_task(fields: Mapping[str, Any]) -> str | None:
    """The id of the task a continuation works on, if the music submit is one."""
    task_id = optional_str(dict(fields), "task_id")
    return task_id or None


def music_request(
    family: Family,
    fields: Mapping[str, Any],
    source: TaskRow | None,
    *,
    idempotency_key: str | None,
    allow_private: bool,
) -> TaskRequest:
    """A music submit; ``source`` is the key's own task named by ``task_id``, if any."""
    body = dict(fields)
    params: dict[str, Any] = {"make_instrumental": optional_bool(body, "make_instrumental")}
    for name, limit in TEXT_FIELDS.items():
        value = optional_str(body, name)
        if value is not None and len(value) > limit:
            raise InvalidRequest(f"'{name}' has at most {limit} characters.", param=name)
        if value:
            params[name] = value
    mv = optional_str(body, "mv")
    if mv is not None and not 0 < len(mv) <= MAX_MV:
        raise InvalidRequest(f"'mv' is a model version of 1 to {MAX_MV} characters.", param="mv")
    if mv:
        params["mv"] = mv
    if "gpt_description_prompt" in params:
        mode = "inspiration"
    elif "prompt" in params or "tags" in params:
        mode = "custom"
    else:
        raise InvalidRequest(
            "Give 'gpt_description_prompt' (inspiration), or 'prompt' with 'title' and "
            "'tags' (custom).",
            param="gpt_description_prompt",
        )
    if source is not None:
        params.update(_continuation(source, body))
    notify = notify_url(fields, NOTIFY_FIELDS, allow_private=allow_private)
    stored = {"mode": "continuation" if source is not None else mode, **params}
    subject = source.public_id if source is not None else MODEL
    return TaskRequest(
        family=family,
        action=MUSIC,
        model=source.model if source is not None else MODEL,
        params=params,
        stored=stored,
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash(MUSIC, subject, params, notify, ""),
        source=source,
    )


def lyrics_request(
    family: Family, fields: Mapping[str, Any], *, idempotency_key: str | None, allow_private: bool
) -> TaskRequest:
    prompt = required_str(dict(fields), "prompt")
    if len(prompt) > TEXT_FIELDS["prompt"]:
        raise InvalidRequest(
            f"'prompt' has at most {TEXT_FIELDS['prompt']} characters.", param="prompt"
        )
    params = {"prompt": prompt}
    notify = notify_url(fields, NOTIFY_FIELDS, allow_private=allow_private)
    return TaskRequest(
        family=family,
        action=LYRICS,
        model=MODEL,
        params=params,
        stored=dict(params),
        notify_url=notify,
        idempotency_key=idempotency(idempotency_key),
        request_hash=request_hash(LYRICS, MODEL, params, notify, ""),
    )


def _continuation(source: TaskRow, body: dict[str, Any]) -> dict[str, Any]:
    """``continue_clip_id`` and ``continue_at`` on one of the source task's own clips."""
    if source.state != states.SUCCEEDED or source.action != MUSIC:
        raise InvalidRequest(
            "Only a music task that succeeded can be continued; this one cannot.",
            param="task_id",
        )
    clip_id = required_str(body, "continue_clip_id")
    clips = ((source.result or {}).get("outputs") or {}).get("clips") or []
    made = {clip.get("id") for clip in clips if clip.get("status") == "complete"}
    if clip_id not in made:
        raise InvalidRequest(
            "'continue_clip_id' is not a clip this task made.", param="continue_clip_id"
        )
    at = body.get("continue_at")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise InvalidType(
            "Invalid type for 'continue_at': expected seconds into the clip.", param="continue_at"
        )
    if not 0 <= at <= MAX_CONTINUE_AT_S:
        raise InvalidRequest(
            f"'continue_at' is 0 to {MAX_CONTINUE_AT_S:g} seconds.", param="continue_at"
        )
    return {"continue_clip_id": clip_id, "continue_at": at}
