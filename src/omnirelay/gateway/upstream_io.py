"""Reading an upstream's answer, one way for chat and for every other operation.

Each helper closes the response when it fails, so that a broken or silent upstream never
keeps its connection, and turns what went wrong into the gateway's own error: a timeout
into 504, a broken connection into 502, an error answer into what its provider maps it to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import aiohttp

from omnirelay.gateway.calls import Call
from omnirelay.providers.http import retry_after_seconds
from omnirelay.providers.operations import ErrorMapper
from omnirelay.wire.errors import GatewayError, UpstreamError, UpstreamTimeout

MAX_ERROR_BODY = 64 * 1024
STREAM_READ_ERRORS = (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError)

T = TypeVar("T")


async def error_of(response: aiohttp.ClientResponse, provider: ErrorMapper) -> GatewayError:
    """The gateway's error for an error answer (status 400 and up), read in part."""
    try:
        payload = await response.content.read(MAX_ERROR_BODY)
    except STREAM_READ_ERRORS:
        payload = b""
    finally:
        response.close()
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    return provider.error(response.status, payload, retry_after)


async def read_body(call: Call, response: aiohttp.ClientResponse) -> bytes:
    """A complete answer's body; the connection goes back to the pool."""
    try:
        payload = await response.read()
    except TimeoutError as exc:
        response.close()
        raise UpstreamTimeout("The upstream did not finish its response in time.") from exc
    except STREAM_READ_ERRORS as exc:
        response.close()
        raise UpstreamError("The upstream connection broke during the response.") from exc
    except BaseException:
        response.close()
        raise
    response.release()
    call.mark_first_byte()
    return payload


async def first_of(
    response: aiohttp.ClientResponse, items: AsyncIterator[T], timeout_s: float, silent: str
) -> T | None:
    """The first item of a stream, within ``timeout_s``; None when the stream is empty.

    Until it arrives nothing has reached the client, so a failure here may still move the
    call on to another channel.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(items)
    except StopAsyncIteration:
        return None
    except TimeoutError as exc:
        response.close()
        raise UpstreamTimeout(silent) from exc
    except STREAM_READ_ERRORS as exc:
        response.close()
        raise UpstreamError("The upstream connection broke before the stream began.") from exc
    except BaseException:
        response.close()
        raise
