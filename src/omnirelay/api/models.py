"""GET /v1/models and /v1/models/{id}: only the models this key may use."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin_with, no_body
from omnirelay.api.state import AppState
from omnirelay.gateway.keys import KeyState
from omnirelay.wire.errors import ModelNotFound

OWNED_BY = "omnirelay"
ENDPOINT = "models"


def visible_models(state: AppState, key: KeyState) -> list[str]:
    return [model for model in state.router.models_for(key.row.group_name) if key.allows(model)]


def _model_object(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": OWNED_BY}


async def list_models(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT, no_body)
    created = call.key.row.created_at
    data = [_model_object(model, created) for model in visible_models(state, call.key)]
    body = orjson.dumps({"object": "list", "data": data})
    return web.Response(body=body, content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT, no_body)
    model = request.match_info["model"]
    if model not in visible_models(state, call.key):
        raise ModelNotFound(
            f"The model '{model}' does not exist or this key may not use it.", param="model"
        )
    body = orjson.dumps(_model_object(model, call.key.row.created_at))
    return web.Response(body=body, content_type="application/json")
