"""OpenAI and every vendor that speaks its dialect.

This is the fast path: the canonical format is OpenAI's, so the body is forwarded with
only the edits the gateway needs (the upstream model name, and ``stream_options`` so that
streams report usage).
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.openai_ops import OpenAIOperations
from omnirelay.providers.presets import PLAIN, Quirks
from omnirelay.wire.errors import (
    GatewayError,
    UpstreamClientError,
    UpstreamError,
    UpstreamRejectedCredentials,
    UpstreamTimeout,
    UpstreamUnavailable,
    redact,
)

CLIENT_ERROR_STATUSES = frozenset({400, 404, 413, 422})
TIMEOUT_STATUSES = frozenset({408, 504})
CAPACITY_STATUSES = frozenset({429, 529})


class OpenAIProvider(OpenAIOperations):
    """OpenAI itself (no quirks), or an OpenAI-compatible vendor with its preset's quirks."""

    name = "openai"

    def __init__(self, quirks: Quirks = PLAIN) -> None:
        self._quirks = quirks

    def chat_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        quirks = self._quirks.with_options(endpoint.options) if endpoint.options else self._quirks
        if body.get("model") != upstream_model:
            body = {**body, "model": upstream_model}
        if not quirks.plain:
            body = adapt_body(body, quirks)
        if stream and quirks.stream_usage:
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                extra = options if isinstance(options, dict) else {}
                body = {**body, "stream_options": {**extra, "include_usage": True}}
        headers = {**auth_headers(quirks.auth, endpoint.api_key), **endpoint.headers}
        return UpstreamRequest(
            "POST", endpoint.base_url + quirks.chat_path, headers, orjson.dumps(body)
        )

    def needs_inline_images(self, endpoint: Endpoint) -> bool:
        return self._quirks.with_options(endpoint.options).inline_images

    def chat_response(self, payload: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream returned a response that is not JSON.") from exc
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise UpstreamError("The upstream returned a response without 'choices'.")
        return body

    def stream_translator(self, model: str) -> None:
        return None

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        upstream = _error_object(payload)
        message = redact(str(upstream.get("message") or "")) or f"HTTP {status}"
        if status in CLIENT_ERROR_STATUSES:
            return UpstreamClientError(status, message, error=upstream)
        if status in TIMEOUT_STATUSES:
            return UpstreamTimeout(f"The upstream timed out: {message}")
        if (
            upstream.get("code") == "insufficient_quota"
            or upstream.get("type") == "insufficient_quota"
        ):
            return UpstreamRejectedCredentials(f"The upstream account has no balance: {message}")
        if status in CAPACITY_STATUSES:
            return UpstreamUnavailable(
                f"The upstream is over capacity: {message}", retry_after=retry_after
            )
        if status in (401, 403):
            return UpstreamRejectedCredentials(
                f"The upstream refused the gateway's credentials: {message}"
            )
        return UpstreamError(f"The upstream failed with HTTP {status}: {message}")


def auth_headers(style: str, api_key: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if style == "api-key":
        headers["api-key"] = api_key
    elif style != "none":
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def adapt_body(body: dict[str, Any], quirks: Quirks) -> dict[str, Any]:
    """The body with the vendor's field names, without the fields it refuses."""
    adapted: dict[str, Any] | None = None
    for ours, theirs in quirks.rename.items():
        if ours in body:
            adapted = adapted if adapted is not None else dict(body)
            value = adapted.pop(ours)
            adapted.setdefault(theirs, value)
    for ours, theirs in quirks.copy.items():
        current = adapted if adapted is not None else body
        if ours in current and theirs not in current:
            adapted = adapted if adapted is not None else dict(body)
            adapted[theirs] = current[ours]
    drop = [name for name in quirks.drop if name in (adapted or body)]
    if not quirks.stream_usage and "stream_options" in (adapted or body):
        drop.append("stream_options")
    if drop:
        adapted = adapted if adapted is not None else dict(body)
        for name in drop:
            adapted.pop(name, None)
    return adapted if adapted is not None else body


def _error_object(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {"message": payload[:200].decode(errors="replace").strip()}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return {"message": body["message"]}
    return {}
