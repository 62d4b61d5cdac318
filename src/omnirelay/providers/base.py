"""What every provider implements: one method per operation it supports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from omnirelay.wire.errors import GatewayError
from omnirelay.wire.uploads import Upload


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one upstream channel."""

    base_url: str
    api_key: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    """Channel options a dialect needs, such as Azure's ``api_version``."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    form: Upload | None = None
    """A multipart body, sent instead of ``body``: its files stream from disk."""


class StreamTranslator(Protocol):
    """Turns one upstream stream into OpenAI ``chat.completion.chunk`` payloads.

    Each payload is the JSON of one chunk, as bytes, without SSE framing. Usage goes in a
    final chunk with ``"choices": []``, as OpenAI sends it when ``include_usage`` is set.
    The relay adds the closing ``[DONE]`` itself.
    """

    def feed(self, data: bytes) -> list[bytes]:
        """The chunks for one upstream event's ``data:`` payload (often none)."""
        ...

    def finish(self) -> list[bytes]:
        """Chunks still owed when the upstream stream ends."""
        ...


class ChatProvider(Protocol):
    def chat_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        """Build the upstream request from a canonical (OpenAI-shaped) chat body."""
        ...

    def chat_response(self, payload: bytes) -> dict[str, Any]:
        """Parse a non-stream upstream response into the canonical shape."""
        ...

    def stream_translator(self, model: str) -> StreamTranslator | None:
        """A translator for this dialect's stream, or None when it already is OpenAI's."""
        ...

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        """Map an upstream error response to the gateway's error hierarchy."""
        ...


class InlineImages(Protocol):
    """Optional: a provider whose upstream, on some channels, takes images only inline.

    When it answers True, the relay replaces http(s) image URLs with base64 ``data:`` URLs
    (``gateway.fetch.inline_images``) before ``chat_request``.
    """

    def needs_inline_images(self, endpoint: Endpoint) -> bool: ...
