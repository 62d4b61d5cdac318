"""A loopback HTTP server in a thread of its own: the scaffolding every fake upstream shares.

A subclass builds its aiohttp application in ``_app()``; ``start()`` binds a free port on
127.0.0.1 and serves from a new thread with its own event loop, so a blocking client in the
test thread never stalls it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web


@dataclass
class Received:
    """One request as a fake received it."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when empty or not JSON


class LoopbackServer:
    """Serves ``_app()`` on a free port of 127.0.0.1 from a thread of its own."""

    name = "fake"

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(
                self._app(), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
            )
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:
                failed.append(exc)
                sock.close()
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        thread = threading.Thread(target=serve, name=f"{self.name}-{port}", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start within 10 s")
        if failed:
            thread.join()
            raise RuntimeError(f"{self.name} failed to start") from failed[0]
        self._thread, self._loop, self._port = thread, loop, port

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = self._loop = self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ThreadedServer(LoopbackServer):
    """A loopback server that records every request it receives."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._received: list[Received] = []

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def forget(self) -> None:
        with self._lock:
            self._received.clear()

    async def _record(self, request: web.Request) -> tuple[Received, bool]:
        """Record a request; returns it and whether its body parsed as JSON."""
        raw = await request.read()
        body: Any = None
        parsed = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                parsed = False
        seen = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self._received.append(seen)
        return seen, parsed


async def abort(request: web.Request) -> None:
    """Let what was written reach the socket, then drop the connection without a proper end."""
    transport = request.transport
    if transport is None:
        return
    for _ in range(200):
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    transport.abort()
