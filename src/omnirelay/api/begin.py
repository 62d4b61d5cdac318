"""How every client call begins, and how its answer leaves.

:func:`begin_with` is the one way in for every client path: it authenticates the key (from
``Authorization: Bearer`` or where each dialect's SDK puts it, ``body.bearer_secret``),
checks the client's address against the key's allowlist, reads the body within the size
limit, and opens the :class:`Call` with its request id, endpoint, body size and client
address. :func:`send` writes a pipeline's answer, complete or streamed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from omnirelay.api.body import bearer_secret, read_json_sized
from omnirelay.api.errors import REQUEST_ID_HEADER, REQUEST_ID_KEY
from omnirelay.api.state import AppState, state_of
from omnirelay.api.uploads import read_upload
from omnirelay.gateway.calls import Call
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.operation import Reply, StreamReply
from omnirelay.wire import sse
from omnirelay.wire.uploads import Upload

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
JSONBody = dict[str, Any]

T = TypeVar("T")
Reader = Callable[[web.Request, int], Awaitable[tuple[T, int]]]


async def no_body(_request: web.Request, _limit: int) -> tuple[None, int]:
    return None, 0


async def upload_body(request: web.Request, limit: int) -> tuple[Upload, int]:
    upload = await read_upload(request, limit)
    return upload, sum(part.size for part in upload.files)


async def json_or_upload_body(request: web.Request, limit: int) -> tuple[JSONBody | Upload, int]:
    """A JSON body, or a multipart one (whose files spool to disk), as the client sent."""
    if request.content_type == "multipart/form-data":
        return await upload_body(request, limit)
    return await read_json_sized(request, limit)


async def begin(request: web.Request, endpoint: str) -> tuple[AppState, Call, JSONBody]:
    """:func:`begin_with` for a JSON body."""
    return await begin_with(request, endpoint, read_json_sized)


async def begin_with(
    request: web.Request, endpoint: str, reader: Reader[T]
) -> tuple[AppState, Call, T]:
    """Authenticate, authorize the address, read the body with ``reader``, open the call."""
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    KeyCache.authorize_ip(key, request.remote)
    body, size = await reader(request, state.settings.max_body_bytes)
    call = Call.begin(
        request[REQUEST_ID_KEY], key, endpoint, body_bytes=size, client_ip=request.remote
    )
    headers = request.headers
    call.traceparent = headers.get("traceparent")
    if call.traceparent is not None:
        call.tracestate = headers.get("tracestate")
    return state, call, body


class Retelling(Protocol):
    """Turns a stream of OpenAI chunk payloads into another dialect's events."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


async def send(
    request: web.Request,
    result: Reply | StreamReply,
    *,
    headers: Mapping[str, str] | None = None,
    retell: Retelling | None = None,
) -> web.StreamResponse:
    """Write a pipeline's answer: complete, or streamed as it comes (told in another
    dialect's events when ``retell`` is given; the chunks of one read leave in one write)."""
    if isinstance(result, Reply):
        response = web.Response(status=200, body=result.body, headers=headers)
        response.headers["Content-Type"] = result.content_type
        return response
    stream = web.StreamResponse(
        headers={
            **STREAM_HEADERS,
            "Content-Type": result.content_type,
            REQUEST_ID_HEADER: request[REQUEST_ID_KEY],
            **(headers or {}),
        }
    )
    try:
        await stream.prepare(request)
        if result.first:
            await stream.write(_retold(result.first, retell))
        async for chunk in result.rest:
            await stream.write(_retold(chunk, retell))
        if retell is not None:
            await stream.write(b"".join(retell.finish()))
        await stream.write_eof()
    except (ConnectionResetError, ClientConnectionResetError):
        pass  # The client went away; closing the stream below cancels the upstream.
    finally:
        await result.rest.aclose()
    return stream


def _retold(chunk: bytes, retell: Retelling | None) -> bytes:
    """A chunk of whole ``data:`` events as the client's dialect tells it."""
    if retell is None:
        return chunk
    out: list[bytes] = []
    for event in chunk.split(b"\n\n"):
        data = sse.event_data(event)
        if data is not None:
            out.extend(retell.feed(data))
    return b"".join(out)
