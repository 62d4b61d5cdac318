"""OpenAI's operations beyond chat, for OpenAI and every vendor that speaks its dialect.

The request passes through with only the upstream model name changed (and, for streamed
completions, ``stream_options`` so the stream reports usage); answers are OpenAI's own.
A subclass moves the operations elsewhere by overriding ``operation_url`` and
``operation_headers`` (Azure's deployment URLs).
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.presets import PLAIN, Quirks
from omnirelay.wire.errors import UpstreamError
from omnirelay.wire.uploads import Upload


class OpenAIOperations:
    _quirks: Quirks = PLAIN
    _responses = False
    """Whether channels of this type serve ``/responses`` unless their ``responses_api``
    option says otherwise."""

    def operation_url(self, endpoint: Endpoint, path: str, upstream_model: str) -> str:
        return endpoint.base_url + path

    def operation_headers(self, endpoint: Endpoint, *, json: bool = True) -> dict[str, str]:
        quirks = self._quirks.with_options(endpoint.options) if endpoint.options else self._quirks
        headers: dict[str, str] = {}
        if quirks.auth == "api-key":
            headers["api-key"] = endpoint.api_key
        elif quirks.auth != "none":
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        if json:
            headers["Content-Type"] = "application/json"
        return {**headers, **endpoint.headers}

    def _json(
        self, endpoint: Endpoint, path: str, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        if body.get("model") != upstream_model:
            body = {**body, "model": upstream_model}
        url = self.operation_url(endpoint, path, upstream_model)
        return UpstreamRequest("POST", url, self.operation_headers(endpoint), orjson.dumps(body))

    def _form(
        self, endpoint: Endpoint, path: str, upload: Upload, upstream_model: str
    ) -> UpstreamRequest:
        url = self.operation_url(endpoint, path, upstream_model)
        headers = self.operation_headers(endpoint, json=False)
        return UpstreamRequest("POST", url, headers, b"", upload.replaced("model", upstream_model))

    def embeddings_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return self._json(endpoint, "/embeddings", body, upstream_model)

    def embeddings_response(self, payload: bytes, body: dict[str, Any]) -> dict[str, Any]:
        return json_object(payload, "data")

    def moderations_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return self._json(endpoint, "/moderations", body, upstream_model)

    def completions_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        quirks = self._quirks.with_options(endpoint.options) if endpoint.options else self._quirks
        if stream and quirks.stream_usage:
            options = body.get("stream_options")
            extra = options if isinstance(options, dict) else {}
            body = {**body, "stream_options": {**extra, "include_usage": True}}
        return self._json(endpoint, "/completions", body, upstream_model)

    def image_generation_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return self._json(endpoint, "/images/generations", body, upstream_model)

    def image_edit_request(
        self, endpoint: Endpoint, upload: Upload, upstream_model: str
    ) -> UpstreamRequest:
        return self._form(endpoint, "/images/edits", upload, upstream_model)

    def image_variation_request(
        self, endpoint: Endpoint, upload: Upload, upstream_model: str
    ) -> UpstreamRequest:
        return self._form(endpoint, "/images/variations", upload, upstream_model)

    def speech_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return self._json(endpoint, "/audio/speech", body, upstream_model)

    def transcription_request(
        self, endpoint: Endpoint, upload: Upload, upstream_model: str, translate: bool
    ) -> UpstreamRequest:
        path = "/audio/translations" if translate else "/audio/transcriptions"
        return self._form(endpoint, path, upload, upstream_model)

    def serves_responses(self, endpoint: Endpoint) -> bool:
        option = endpoint.options.get("responses_api")
        return option if isinstance(option, bool) else self._responses

    def responses_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return self._json(endpoint, "/responses", body, upstream_model)

    def rerank_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return self._json(endpoint, "/rerank", body, upstream_model)

    def rerank_response(self, payload: bytes, body: dict[str, Any]) -> dict[str, Any]:
        return json_object(payload, "results")


def json_object(payload: bytes, required: str) -> dict[str, Any]:
    """An upstream's JSON answer, which must be an object carrying ``required``."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The upstream returned a response that is not JSON.") from exc
    if not isinstance(body, dict) or required not in body:
        raise UpstreamError(f"The upstream returned a response without '{required}'.")
    return body
