"""What every operation is built with: the pipeline to run in, the upstream, the dialects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from omnirelay.gateway.pipeline import Pipeline
from omnirelay.gateway.routing import Route
from omnirelay.gateway.upstream_io import Upstream
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.wire.errors import UpstreamError
from omnirelay.wire.tokens import TokenCounter

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Kit:
    pipeline: Pipeline
    upstream: Upstream
    providers: ProviderRegistry
    tokens: TokenCounter

    def provider(self, route: Route, protocol: type[P], what: str) -> P:
        """The route's provider for one operation; a channel whose type cannot serve it is
        a failure of that channel, so the call moves on to the next."""
        provider = self.providers.provider(route.channel.type)
        if not isinstance(provider, protocol):
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve {what}.")
        return provider
