"""What a provider implements for the operations beyond chat: one method per operation.

Each builds the upstream request for one operation from the OpenAI-shaped request (a JSON
body, or a multipart upload whose files stream from disk). A provider that answers in
another shape also turns the answer into OpenAI's (``embeddings_response``,
``rerank_response``); the others' answers are OpenAI's already.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from omnirelay.providers.base import ChatProvider, Endpoint, UpstreamRequest
from omnirelay.wire.errors import GatewayError
from omnirelay.wire.uploads import Upload


class ErrorMapper(Protocol):
    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError: ...


@runtime_checkable
class GenerateContentProvider(ChatProvider, Protocol):
    """A dialect that is Gemini's ``generateContent``: a Gemini client's request can go to it
    as it came, and its answer is read (``chat_response``, ``stream_translator``) to meter."""

    def generate_content_request(
        self, endpoint: Endpoint, payload: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest: ...


@runtime_checkable
class EmbeddingsProvider(ErrorMapper, Protocol):
    def embeddings_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest: ...

    def embeddings_response(self, payload: bytes, body: dict[str, Any]) -> dict[str, Any]: ...


@runtime_checkable
class ModerationsProvider(ErrorMapper, Protocol):
    def moderations_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest: ...


@runtime_checkable
class CompletionsProvider(ErrorMapper, Protocol):
    def completions_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest: ...


@runtime_checkable
class ImagesProvider(ErrorMapper, Protocol):
    def image_generation_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest: ...

    def image_edit_request(
        self, endpoint: Endpoint, upload: Upload, upstream_model: str
    ) -> UpstreamRequest: ...


@runtime_checkable
class ImageVariationsProvider(ErrorMapper, Protocol):
    def image_variation_request(
        self, endpoint: Endpoint, upload: Upload, upstream_model: str
    ) -> UpstreamRequest: ...


@runtime_checkable
class SpeechProvider(ErrorMapper, Protocol):
    def speech_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest: ...


@runtime_checkable
class TranscriptionProvider(ErrorMapper, Protocol):
    def transcription_request(
        self, endpoint: Endpoint, upload: Upload, upstream_model: str, translate: bool
    ) -> UpstreamRequest: ...


@runtime_checkable
class RerankProvider(ErrorMapper, Protocol):
    def rerank_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest: ...

    def rerank_response(self, payload: bytes, body: dict[str, Any]) -> dict[str, Any]: ...


@runtime_checkable
class ResponsesProvider(ErrorMapper, Protocol):
    """A dialect whose upstream may serve OpenAI's Responses API itself."""

    def serves_responses(self, endpoint: Endpoint) -> bool:
        """Whether this channel takes ``/responses``; when not, the call is translated to
        chat."""
        ...

    def responses_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest: ...
