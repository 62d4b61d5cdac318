"""An upstream's own list of models (``GET …/models``), in each dialect that has one.

The console's "fetch models" button reads it so an operator picks a channel's models from
what the upstream serves instead of typing them. OpenAI and every OpenAI-compatible preset
answer ``{"data": [{"id"}]}`` (Anthropic too, with its own headers); Gemini answers
``{"models": [{"name": "models/…"}]}``. Azure lists deployments elsewhere, and Cohere's
channels serve only rerank: those types have no list here.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.providers.anthropic import API_VERSION
from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.openai import auth_headers
from omnirelay.providers.presets import PLAIN, presets
from omnirelay.wire.errors import UpstreamError

NO_LIST = frozenset({"azure", "cohere", "midjourney", "suno"})
MAX_MODELS = 5000


def models_request(channel_type: str, endpoint: Endpoint) -> UpstreamRequest | None:
    """The request for the upstream's model list, or None when its type has none."""
    if channel_type in NO_LIST:
        return None
    url = endpoint.base_url + "/models"
    if channel_type == "anthropic":
        headers = {
            "x-api-key": endpoint.api_key,
            "anthropic-version": str(endpoint.options.get("anthropic_version", API_VERSION)),
        }
    elif channel_type == "gemini":
        headers = {"x-goog-api-key": endpoint.api_key}
        url += "?pageSize=1000"
    else:
        preset = presets().get(channel_type)
        quirks = (preset.quirks if preset else PLAIN).with_options(endpoint.options)
        headers = auth_headers(quirks.auth, endpoint.api_key)
        headers.pop("Content-Type", None)
    return UpstreamRequest("GET", url, {**headers, **endpoint.headers}, b"")


def read_models(payload: bytes) -> list[str]:
    """The model names of a list answer in any of the shapes above, sorted."""
    try:
        body: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The upstream's model list is not JSON.") from exc
    items = body.get("data", body.get("models")) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise UpstreamError("The upstream's answer holds no list of models.")
    names: set[str] = set()
    for item in items[:MAX_MODELS]:
        name = (item.get("id") or item.get("name")) if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            names.add(name.removeprefix("models/"))
    return sorted(names)
