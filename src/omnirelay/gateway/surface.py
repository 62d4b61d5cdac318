"""Every operation the gateway serves, built once over one :class:`Kit`.

``run`` calls a JSON operation by its endpoint name, in-process: what a batch line (or any
caller without an HTTP request) uses to make a call the way a client would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from omnirelay.gateway import chat, completions, embeddings, images, rerank, responses
from omnirelay.gateway.audio import SPEECH, Audio
from omnirelay.gateway.calls import Call
from omnirelay.gateway.chat import Chat
from omnirelay.gateway.completions import Completions
from omnirelay.gateway.embeddings import Embeddings, Moderations
from omnirelay.gateway.fetch import ImageFetcher
from omnirelay.gateway.generate_content import GenerateContent
from omnirelay.gateway.images import Images
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.operation import Reply, StreamReply
from omnirelay.gateway.rerank import Rerank
from omnirelay.gateway.responses import Responses
from omnirelay.store.responses import ResponseRepository
from omnirelay.wire.errors import NotFound

JSONCall = Callable[[Call, dict[str, Any]], Awaitable[Reply | StreamReply]]


class Surface:
    def __init__(
        self,
        kit: Kit,
        *,
        fingerprint: str,
        hold_output_tokens: int,
        fetcher: ImageFetcher | None = None,
        stored_responses: ResponseRepository | None = None,
    ) -> None:
        self.chat = Chat(
            kit,
            fingerprint=fingerprint,
            hold_output_tokens=hold_output_tokens,
            fetcher=fetcher,
        )
        self.gemini = GenerateContent(kit, self.chat)
        self.completions = Completions(kit)
        self.embeddings = Embeddings(kit)
        self.moderations = Moderations(kit)
        self.images = Images(kit)
        self.audio = Audio(kit)
        self.rerank = Rerank(kit)
        self.responses = Responses(
            kit, self.chat, stored_responses, hold_output_tokens=hold_output_tokens
        )
        self._json: dict[str, JSONCall] = {
            chat.ENDPOINT: self.chat.create,
            completions.ENDPOINT: self.completions.create,
            embeddings.EMBEDDINGS: self.embeddings.create,
            embeddings.MODERATIONS: self.moderations.create,
            images.GENERATIONS: self.images.generate,
            SPEECH: self.audio.speech,
            rerank.ENDPOINT: self.rerank.create,
            responses.ENDPOINT: self.responses.create,
        }

    @property
    def endpoints(self) -> list[str]:
        """The operations ``run`` can call."""
        return sorted(self._json)

    async def run(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        """Run ``call.endpoint``'s operation on a JSON body, in-process."""
        operation = self._json.get(call.endpoint)
        if operation is None:
            raise NotFound(f"No operation is served as '{call.endpoint}'.")
        return await operation(call, body)
