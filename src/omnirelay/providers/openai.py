"""OpenAI and every vendor that speaks its dialect.

This is the fast path: the canonical format is OpenAI's, so the body is forwarded with
only the edits the gateway needs (the upstream model name, and ``stream_options`` so that
streams report usage).
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import UpstreamFailure, error_for, error_object, text
from omnirelay.providers.openai_ops import OpenAIOperations
from omnirelay.providers.presets import PLAIN, Quirks
from omnirelay.wire.errors import GatewayError, UpstreamError


class OpenAIProvider(OpenAIOperations):
    """OpenAI itself (no quirks), or an OpenAI-compatible vendor with its preset's quirks."""

    name = "openai"

    def __init__(self, quirks: Quirks = PLAIN, *, responses: bool = False) -> None:
        self._quirks = quirks
        self._responses = responses

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
        upstream = error_object(payload)
        no_balance = "insufficient_quota" in (upstream.get("code"), upstream.get("type"))
        failure = UpstreamFailure(
            status, text(upstream.get("message")), relayed=upstream, no_balance=no_balance
        )
        return error_for(failure, retry_after)


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
