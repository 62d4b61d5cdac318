"""How client connections are taken and kept, for ``serve`` and for each ``--workers`` process.

- A new connection must send its first request's headers within ``header_timeout_s``. The
  deadline is one timer per connection, set when it opens: bytes trickled in do not move it,
  and a request that arrived in time makes it a no-op, so requests pay nothing for it.
- An idle keep-alive connection closes after ``keepalive_timeout_s``; aiohttp's own timer
  does this, and it also bounds how long a kept-alive connection may take over its next
  request's headers.
- Past ``max_connections`` open connections in this process, a new one is answered at once
  with a 503 in OpenAI's error JSON and closed, without reading its request (a client that
  had already sent one may see the connection reset instead).
- What aiohttp's parser refuses before any route is found — a URL longer than
  ``max_url_bytes`` (414), a header line longer than ``max_header_bytes`` (431), or bytes
  that are not HTTP (400) — is answered in OpenAI's error JSON too, and logged without the
  request's bytes, which may hold a key.
- No response names the server software or its version: ``Server: omnirelay``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from omnirelay.api.drain import StopSignals, drain
from omnirelay.api.errors import REQUEST_ID_HEADER, error_response, new_request_id
from omnirelay.config import Settings
from omnirelay.wire.errors import GatewayError, InvalidRequest

log = logging.getLogger("omnirelay.listener")

SERVER_NAME = "omnirelay"
BACKLOG = 1024
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHUTDOWN_AFTER_DRAIN_S = 1.0


class ServiceBusy(GatewayError):
    status = 503
    type = "server_error"
    code = "too_many_connections"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    max_connections: int
    max_url_bytes: int
    max_header_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            max_connections=settings.max_connections,
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
        )

    def parse_error(self, status: int, exc: BaseException | None) -> GatewayError:
        """The error to answer for a request the server could not hand to the app."""
        if isinstance(exc, LineTooLong):
            # The parser names the limit it hit: the URL's or a header line's.
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == self.max_url_bytes and limit != self.max_header_bytes:
                return _sized(
                    414, "uri_too_long", f"The URL is longer than {limit} bytes; shorten it."
                )
            return _sized(
                431,
                "headers_too_large",
                f"A request header is longer than {self.max_header_bytes} bytes.",
            )
        if isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower():
            return _sized(431, "headers_too_large", "The request has too many headers.")
        if status == 400:
            return InvalidRequest("The request is not valid HTTP/1.1.", code="invalid_http")
        error = GatewayError("The gateway failed to handle this request; it has been logged.")
        error.status = status if status >= 500 else 500
        return error


def _sized(status: int, code: str, message: str) -> GatewayError:
    error = InvalidRequest(message, code=code)
    error.status = status
    return error


async def name_server(_request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp names itself and its version in ``Server``; say only what this is."""
    response.headers[hdrs.SERVER] = SERVER_NAME


class _GuardedServer(web.Server):
    """aiohttp's server, making a ``_GuardedHandler`` per connection and counting them."""

    def __init__(self, plain: web.Server, limits: ConnectionLimits) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,
        )
        self.limits = limits
        self.open = 0
        self.refused = 0

    def __call__(self) -> web.RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)

    def pre_shutdown(self) -> None:
        """Busy connections close after their request; idle keep-alive ones close now.
        aiohttp only cancels an idle connection's wait for its next request, which leaves
        the socket open until its keep-alive timer: a drain would wait for it in vain."""
        super().pre_shutdown()
        for connection in list(self.connections):
            if isinstance(connection, _GuardedHandler):
                connection.close_if_idle()

    def refusal(self) -> bytes:
        """A whole HTTP response: 503, OpenAI's error JSON, and the connection closes."""
        error = ServiceBusy(
            "The gateway has as many connections open as it takes; retry shortly.",
            retry_after=1,
        )
        body = orjson.dumps(error.body())
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{REQUEST_ID_HEADER}: {new_request_id()}\r\n"
            "Retry-After: 1\r\n"
            f"Server: {SERVER_NAME}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body


class _GuardedHandler(web.RequestHandler):
    __slots__ = ("_deadline", "_guard", "_refused")

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open >= guard.limits.max_connections:
            self._refused = True
            guard.refused += 1
            # uvloop's transports are not asyncio.Transport subclasses, but they write.
            cast(asyncio.Transport, transport).write(guard.refusal())
            transport.close()
            return
        guard.open += 1
        super().connection_made(transport)
        self._deadline = asyncio.get_running_loop().call_later(
            guard.limits.header_timeout_s, self._headers_due
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return  # never started: nothing of aiohttp's to stop
        self._guard.open -= 1
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def close_if_idle(self) -> None:
        if self._request_in_progress or self._messages:
            return
        self.force_close()
        if self.transport is not None:
            self.transport.close()

    def _headers_due(self) -> None:
        # aiohttp counts a request once its headers are parsed.
        if self._request_count == 0:
            log.debug("closing a connection that sent no complete request headers in time")
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp answers parser errors in plain text and logs the offending bytes."""
        if status >= 500:
            log.error("error handling a request: %s", type(exc).__name__ if exc else status)
        else:
            log.debug("refused an unparsable request: %s", type(exc).__name__ if exc else status)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is broken")
        response = error_response(self._guard.limits.parse_error(status, exc), new_request_id())
        response.headers[hdrs.SERVER] = SERVER_NAME
        response.force_close()
        return response


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose server enforces ``ConnectionLimits``."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(
            app,
            handle_signals=False,
            access_log=None,
            # A client that goes away cancels its handler at once, which closes the upstream.
            handler_cancellation=True,
            keepalive_timeout=settings.keepalive_timeout_s,
            max_line_size=settings.max_url_bytes,
            max_field_size=settings.max_header_bytes,
            # The drain (``api/drain.py``) has waited for running calls already; what is
            # left when the runner cleans up is cancelled after this.
            shutdown_timeout=SHUTDOWN_AFTER_DRAIN_S,
        )
        self._limits = ConnectionLimits.of(settings)

    async def _make_server(self) -> web.Server:
        return _GuardedServer(await super()._make_server(), self._limits)


@asynccontextmanager
async def listening(
    app: web.Application, settings: Settings, *, reuse_port: bool = False
) -> AsyncIterator[GatewayRunner]:
    """Start the app and listen on ``settings.host:port`` until the block ends."""
    runner = GatewayRunner(app, settings)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, reuse_port=reuse_port, backlog=BACKLOG
        )
        await site.start()
        yield runner
    finally:
        await runner.cleanup()


async def serve_until_stopped(app: web.Application, settings: Settings) -> None:
    """Serve in this process until SIGINT or SIGTERM, then drain (``api/drain.py``)."""
    signals = StopSignals()
    signals.install(STOP_SIGNALS)
    async with listening(app, settings) as runner:
        for host, port, *_ in runner.addresses:
            print(f"OmniRelay serving on http://{host}:{port} (Ctrl-C to stop)", flush=True)
        await signals.stop.wait()
        await drain(runner, settings.drain_timeout_s, signals.hurry)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop.new_event_loop
