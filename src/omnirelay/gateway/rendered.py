"""A canonical stream told in a client's own dialect.

An operation that serves a client in another shape (Gemini's events) runs the chat
attempt as it is, then wraps its stream: the inner :class:`StreamSource` still meters,
cuts and settles every chunk as it does for Chat Completions; the wrapper only changes the
bytes that reach the client, and the error event sent when the stream breaks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from omnirelay.gateway.operation import Streaming, StreamSource
from omnirelay.wire import sse
from omnirelay.wire.errors import GatewayError
from omnirelay.wire.usage import Usage


class Renderer(Protocol):
    """Turns canonical ``chat.completion.chunk`` payloads into a dialect's events."""

    def feed(self, payload: bytes) -> list[bytes]:
        """The events for one chunk's payload (``[DONE]`` included); often none."""
        ...


Failure = Callable[[GatewayError], bytes]
"""The event that tells the client, in its dialect, that the stream broke."""


class Rendered:
    """A :class:`StreamSource` whose chunks are another's, rendered."""

    content_type = "text/event-stream"

    def __init__(self, inner: StreamSource, renderer: Renderer, failure: Failure) -> None:
        self._inner = inner
        self._renderer = renderer
        self._failure = failure

    def over(self, streaming: Streaming) -> Streaming:
        """``streaming`` (opened on the inner source), rendered from its first chunk on."""
        first = None if streaming.first is None else self.render(streaming.first)
        return Streaming(self, first, self._rendered(streaming.rest), streaming.ends_at)

    def render(self, chunk: bytes) -> bytes:
        """A chunk of whole SSE events, in the client's dialect."""
        out: list[bytes] = []
        for event in chunk.split(b"\n\n"):
            data = sse.event_data(event)
            if data is not None:
                out.extend(self._renderer.feed(data))
        return b"".join(out)

    async def _rendered(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            rendered = self.render(chunk)
            if rendered:
                yield rendered

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._rendered(aiter(self._inner))

    @property
    def finished(self) -> bool:
        return self._inner.finished

    def cost_so_far(self) -> int:
        return self._inner.cost_so_far()

    def charge(self) -> tuple[int, Usage]:
        return self._inner.charge()

    def failure_tail(self, error: GatewayError) -> bytes:
        return self._failure(error)

    def close(self) -> None:
        self._inner.close()
