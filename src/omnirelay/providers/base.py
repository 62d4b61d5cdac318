"""What every provider implements: one method per operation it supports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from omnirelay.wire.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one upstream channel."""

    base_url: str
    api_key: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class ChatProvider(Protocol):
    def chat_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        """Build the upstream request from a canonical (OpenAI-shaped) chat body."""
        ...

    def chat_response(self, payload: bytes) -> dict[str, Any]:
        """Parse a non-stream upstream response into the canonical shape."""
        ...

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        """Map an upstream error response to the gateway's error hierarchy."""
        ...
