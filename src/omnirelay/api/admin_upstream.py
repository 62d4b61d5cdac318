"""What the console's channel form needs from the gateway and the upstream.

GET  /admin/channel-types     every channel type and the base URL it defaults to
POST /admin/upstream-models   the models an upstream lists: {"type", "base_url", "api_key",
                              "options"} for a new channel, or {"channel_id"} (and any of
                              those to override) for a stored one, whose key the
                              browser never sees
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnirelay.api.admin import ADMIN_BODY_LIMIT, _json
from omnirelay.api.admin_auth import operator
from omnirelay.api.body import read_json
from omnirelay.gateway.admin import ChannelTimeouts, check_url, parse
from omnirelay.providers.base import Endpoint
from omnirelay.providers.model_list import NO_LIST
from omnirelay.providers.presets import default_base_url
from omnirelay.wire.errors import InvalidRequest, NotFound


class ModelsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel_id: int | None = None
    type: str | None = None
    base_url: str | None = None
    api_key: str | None = Field(default=None, min_length=1)
    headers: dict[str, str] | None = None
    options: dict[str, Any] | None = None
    timeouts: ChannelTimeouts | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)


async def channel_types(request: web.Request) -> web.Response:
    state, _ = await operator(request)
    types = [
        {"type": name, "base_url": default_base_url(name), "lists_models": name not in NO_LIST}
        for name in state.admin.channel_types
    ]
    return _json({"data": types})


async def upstream_models(request: web.Request) -> web.Response:
    state, _ = await operator(request)
    query = parse(ModelsQuery, await read_json(request, ADMIN_BODY_LIMIT))
    channel_type, base_url = query.type, query.base_url
    api_key, headers, options = query.api_key, query.headers, dict(query.options or {})
    if query.channel_id is not None:
        row = await state.store.channels.get(query.channel_id)
        if row is None:
            raise NotFound(f"No channel has id {query.channel_id}.", param="channel_id")
        channel_type = channel_type or row.type
        base_url = base_url or row.base_url
        api_key = api_key or row.api_key
        headers = headers if headers is not None else dict(row.options.get("headers") or {})
        options = {**row.options, **options}
    channel_type = channel_type or "openai"
    base_url = base_url or default_base_url(channel_type)
    if not base_url:
        raise InvalidRequest("Give the upstream's base_url.", param="base_url")
    if not api_key:
        raise InvalidRequest("Give the upstream's api_key.", param="api_key")
    if query.timeouts is not None:
        options["timeouts"] = query.timeouts.model_dump(exclude_none=True)
    endpoint = Endpoint(base_url.rstrip("/"), api_key, headers or {}, options)
    models = await state.prober.upstream_models(channel_type, endpoint)
    return _json({"data": models})
