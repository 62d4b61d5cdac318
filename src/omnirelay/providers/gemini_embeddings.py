"""Embeddings through Gemini's ``batchEmbedContents``, answered in OpenAI's shape.

Gemini reports no token usage for embeddings; the gateway counts the input itself.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.wire.errors import InvalidRequest, UpstreamError


def embeddings_request(
    endpoint: Endpoint, body: dict[str, Any], upstream_model: str
) -> UpstreamRequest:
    model = upstream_model.removeprefix("models/")
    texts = _texts(body.get("input"))
    requests: list[dict[str, Any]] = []
    for text in texts:
        request: dict[str, Any] = {
            "model": f"models/{model}",
            "content": {"parts": [{"text": text}]},
        }
        if isinstance(body.get("dimensions"), int):
            request["outputDimensionality"] = body["dimensions"]
        requests.append(request)
    headers = {
        "x-goog-api-key": endpoint.api_key,
        "Content-Type": "application/json",
        **endpoint.headers,
    }
    url = f"{endpoint.base_url}/models/{model}:batchEmbedContents"
    return UpstreamRequest("POST", url, headers, orjson.dumps({"requests": requests}))


def embeddings_response(payload: bytes, body: dict[str, Any]) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Gemini returned embeddings that are not JSON.") from exc
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list):
        raise UpstreamError("Gemini returned no 'embeddings'.")
    as_base64 = body.get("encoding_format") == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encode(item.get("values") or [], as_base64),
            }
            for index, item in enumerate(embeddings)
            if isinstance(item, dict)
        ],
        # No usage from Gemini: the gateway counts the input and fills it in.
        "model": str(body.get("model")),
    }


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidRequest(
        "Gemini channels embed text only: give 'input' as a string or an array of strings.",
        param="input",
    )


def _encode(values: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return values
    # OpenAI's base64 form: little-endian float32s.
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
