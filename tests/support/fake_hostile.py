"""A deliberately hostile upstream in OpenAI's dialect: it answers whatever a test scripts.

The faithful fakes show what a well-behaved provider does; this one shows what a broken or
malicious one can do to the gateway: usage that cannot be true, endless streams that ignore
``max_tokens``, events that are not JSON or not UTF-8, streams that stop without ``[DONE]``,
answers of hundreds of megabytes produced on the fly (the fake never holds them), absurd
``Retry-After`` values and error messages full of tracebacks, paths and host names.

A test sets ``answer`` to one of the builders below; it is served to every request until it
is changed. Every request is recorded (``received``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from .fake_threaded import ThreadedServer, abort

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
MODEL = "gpt-4o-mini"


def chunk(
    content: str | None = None, *, finish: str | None = None, role: str | None = None
) -> bytes:
    """One ``chat.completion.chunk`` as an SSE event."""
    delta: dict[str, Any] = {} if content is None else {"content": content}
    if role is not None:
        delta["role"] = role
    body = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return event(body)


def usage_chunk(usage: Any) -> bytes:
    body = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [],
        "usage": usage,
    }
    return event(body)


def event(body: Any) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def completion(text: str, usage: Any, *, finish: str = "stop") -> dict[str, Any]:
    """A non-stream ``chat.completion`` with whatever usage the test wants reported."""
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    async def answer(_request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status,
            text=json.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    return answer


def slow_answer(body: Any, *, delay: float) -> Answer:
    """``body`` as JSON, after ``delay`` seconds with the status line already sent."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await asyncio.sleep(delay)
        await response.write(json.dumps(body).encode())
        return response

    return answer


def sse_answer(events: Iterable[bytes], *, delay: float = 0.0, cut: bool = False) -> Answer:
    """These raw events, in order; ``cut`` drops the connection after the last one."""
    frozen = list(events)

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        for raw in frozen:
            await response.write(raw)
            if delay:
                await asyncio.sleep(delay)
        if cut:
            await abort(request)
            return response
        await response.write_eof()
        return response

    return answer


def endless_stream(word: str = "word ", *, per_write: int = 8, delay: float = 0.001) -> Answer:
    """Content chunks for ever, whatever ``max_tokens`` said; stops when the reader leaves."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        try:
            while True:
                await response.write(b"".join(chunk(word) for _ in range(per_write)))
                await asyncio.sleep(delay)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    return answer


def huge_body(total: int, *, declared: bool, piece: int = 1024 * 1024) -> Answer:
    """A JSON-looking body of ``total`` bytes, made as it is sent; ``declared`` sends its
    Content-Length up front."""

    async def answer(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if declared:
            headers["Content-Length"] = str(total)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        block = b" " * piece
        sent = 0
        try:
            while sent < total:
                size = min(piece, total - sent)
                await response.write(block[:size])
                sent += size
        except ConnectionResetError:
            pass
        return response

    return answer


def huge_event(total: int, *, piece: int = 1024 * 1024) -> Answer:
    """A stream whose second event never ends: ``total`` bytes without a blank line."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await response.write(chunk("", role="assistant"))
        await response.write(b'data: {"padding": "')
        block = b"x" * piece
        sent = 0
        try:
            while sent < total:
                await response.write(block)
                sent += piece
        except ConnectionResetError:
            pass
        return response

    return answer


class HostileUpstream(ThreadedServer):
    name = "HostileUpstream"

    def __init__(self) -> None:
        super().__init__()
        self.answer: Answer = json_answer(completion("hello", None))
        self.finished_at: list[float] = []

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        try:
            return await self.answer(request)
        finally:
            self.finished_at.append(time.monotonic())
