"""Azure OpenAI: OpenAI's dialect behind deployment URLs, ``api-version`` and ``api-key``.

The channel's ``base_url`` is the resource endpoint (``https://NAME.openai.azure.com``).
Channel options: ``api_version`` (default below; ``"v1"`` selects Azure's v1 API, where the
model goes in the body and no deployment is in the path), ``deployment`` (default: the
upstream model name, so a model mapping can name deployments), and ``auth`` (``"bearer"``
for a Microsoft Entra ID token instead of a key). Content-filter refusals become OpenAI's
error shape with ``code: content_filter``; the stream's ``prompt_filter_results``-only
chunks, which are not OpenAI chunks, are dropped.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import error_object, text
from omnirelay.providers.openai import OpenAIProvider, adapt_body, auth_headers
from omnirelay.providers.openai_ops import OpenAIOperations
from omnirelay.providers.presets import PLAIN
from omnirelay.wire.errors import GatewayError, UpstreamClientError, UpstreamError, clean, for_log

DEFAULT_API_VERSION = "2024-10-21"
DONE = b"[DONE]"
AZURE_ABSENT = frozenset({"/moderations", "/images/variations", "/rerank"})


class AzureOpenAIProvider(OpenAIOperations):
    """Also embeddings, completions, images and audio, at the deployment's URLs; Azure has
    no moderations, image variations or rerank, so those calls move on to other channels."""

    name = "azure"

    def __init__(self) -> None:
        self._openai = OpenAIProvider()

    def operation_url(self, endpoint: Endpoint, path: str, upstream_model: str) -> str:
        if path in AZURE_ABSENT:
            raise UpstreamError(f"Azure OpenAI does not serve {path}.")
        options = endpoint.options
        version = str(options.get("api_version") or DEFAULT_API_VERSION)
        root = endpoint.base_url.removesuffix("/openai")
        if version == "v1":
            return f"{root}/openai/v1{path}"
        deployment = quote(str(options.get("deployment") or upstream_model), safe="")
        return f"{root}/openai/deployments/{deployment}{path}?api-version={version}"

    def operation_headers(self, endpoint: Endpoint, *, json: bool = True) -> dict[str, str]:
        style = str(endpoint.options.get("auth") or "api-key")
        headers = auth_headers(style, endpoint.api_key)
        if not json:
            headers.pop("Content-Type", None)
        return {**headers, **endpoint.headers}

    def chat_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        options = endpoint.options
        quirks = PLAIN.with_options(options)
        version = str(options.get("api_version") or DEFAULT_API_VERSION)
        root = endpoint.base_url.removesuffix("/openai")
        if version == "v1":
            url = f"{root}/openai/v1/chat/completions"
        else:
            deployment = quote(str(options.get("deployment") or upstream_model), safe="")
            url = f"{root}/openai/deployments/{deployment}/chat/completions?api-version={version}"
        body = {**body, "model": upstream_model}
        if not quirks.plain:
            body = adapt_body(body, quirks)
        if stream and quirks.stream_usage:
            given = body.get("stream_options")
            extra = given if isinstance(given, dict) else {}
            body["stream_options"] = {**extra, "include_usage": True}
        style = str(options.get("auth") or "api-key")
        headers = {**auth_headers(style, endpoint.api_key), **endpoint.headers}
        return UpstreamRequest("POST", url, headers, orjson.dumps(body))

    def chat_response(self, payload: bytes) -> dict[str, Any]:
        return self._openai.chat_response(payload)

    def stream_translator(self, model: str) -> AzureStream:
        return AzureStream()

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        error = error_object(payload)
        if error.get("code") == "content_filter":
            # Azure's filter answers 400 (or a 5xx); either way the prompt is the cause.
            relayed = {"type": "invalid_request_error", "param": "prompt", "code": "content_filter"}
            said = text(error.get("message"))
            message = clean(said) or "The prompt was filtered."
            status = 400 if status < 500 else status
            return UpstreamClientError(status, message, error=relayed, detail=for_log(said))
        return self._openai.error(status, payload, retry_after)


class AzureStream:
    """OpenAI's chunks as they come, less Azure's prompt-filter chunks and its [DONE]."""

    def feed(self, data: bytes) -> list[bytes]:
        if data == DONE:
            return []  # the relay adds its own
        if b'"prompt_filter_results"' in data and b'"delta"' not in data and b'"usage"' not in data:
            return []
        return [data]

    def finish(self) -> list[bytes]:
        return []
