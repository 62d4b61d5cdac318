"""What every attempt does with the upstream: send, read an answer, open a stream.

Each step turns what went wrong into the gateway's own error and leaves no connection
behind: an error answer becomes what its provider maps it to, a stream that stays silent
past the first-byte timeout a 504, and a failure closes the response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from omnirelay.gateway.calls import Call
from omnirelay.gateway.operation import Streaming, StreamSource
from omnirelay.gateway.routing import Route
from omnirelay.providers.base import UpstreamRequest
from omnirelay.providers.http import UpstreamClient, UpstreamResponse
from omnirelay.providers.operations import ErrorMapper
from omnirelay.wire.errors import GatewayError, UpstreamTimeout


class Upstream:
    def __init__(
        self, client: UpstreamClient, trace_headers: Callable[[], dict[str, str]] | None = None
    ) -> None:
        self.client = client
        self._trace_headers = trace_headers

    async def send(
        self, provider: ErrorMapper, request: UpstreamRequest, route: Route
    ) -> UpstreamResponse:
        """Send one attempt's request; an error answer becomes the gateway's error.

        With tracing on, the request carries its attempt's ``traceparent``."""
        if self._trace_headers is not None:
            request = replace(request, headers={**request.headers, **self._trace_headers()})
        response = await self.client.send(request, route.timeouts)
        if response.status < 400:
            return response
        raise await error_of(response, provider)

    @staticmethod
    async def read(call: Call, response: UpstreamResponse) -> bytes:
        """A complete answer's body (bounded); the connection goes back to the pool."""
        payload = await response.read()
        call.mark_first_byte()
        return payload

    @staticmethod
    async def open(source: StreamSource, route: Route) -> Streaming:
        """Wait for the stream's first chunk; failing before it, the loop may try another
        channel, as nothing has reached the client yet."""
        chunks = aiter(source)
        ends_at = time.monotonic() + route.timeouts.total_s
        try:
            async with asyncio.timeout(route.timeouts.first_byte_s):
                first = await anext(chunks)
        except StopAsyncIteration:
            return Streaming(source, None, chunks, ends_at)
        except TimeoutError as exc:
            source.close()
            raise UpstreamTimeout("The upstream sent nothing of its stream in time.") from exc
        except BaseException:
            source.close()
            raise
        return Streaming(source, first, chunks, ends_at)


async def error_of(response: UpstreamResponse, provider: ErrorMapper) -> GatewayError:
    """The gateway's error for an error answer (status 400 and up), read in part."""
    payload = await response.read_error()
    return provider.error(response.status, payload, response.retry_after)
