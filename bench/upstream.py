"""A fast fake OpenAI upstream: a raw asyncio HTTP/1.1 server, run in its own process.

``POST .../chat/completions`` answers the seed's response, or, for ``"stream": true``, the
23-event stream of ``seed.stream_chunks`` then ``[DONE]``, each event written on its own
(as a model emits them). Anything else gets a 404. Keep-alive, Content-Length and chunked
request bodies; no pipelining beyond what arrives in order. Lean on purpose: the harness
measures the gateway, so the upstream must cost as little CPU as it can.

    python -m bench.upstream --port 9100 [--latency-ms 0] [--jitter-ms 0] [--event-gap-ms 0]

A jitter spreads the latency uniformly over latency ± jitter, so that closed-loop
connections do not fall into step and reach the gateway all at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal

import orjson

from bench.seed import SEED_RESPONSE, stream_chunks


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nx-request-id: req_fake\r\n"
        "openai-processing-ms: 1\r\n\r\n"
    )
    return head.encode() + body


# OpenAI pretty-prints non-stream bodies.
COMPLETION = _response("200 OK", "application/json", json.dumps(SEED_RESPONSE, indent=2).encode())
NOT_FOUND = _response(
    "404 Not Found", "application/json", b'{"error":{"message":"Unknown path","type":"x"}}'
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nx-request-id: req_fake\r\n\r\n"
)


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _events(include_usage: bool) -> list[bytes]:
    events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in stream_chunks(include_usage)]
    events.append(b"data: [DONE]\n\n")
    return [_chunked(event) for event in events]


EVENTS = {True: _events(True), False: _events(False)}
LAST_CHUNK = b"0\r\n\r\n"


class Options:
    def __init__(self, latency_s: float, jitter_s: float, event_gap_s: float) -> None:
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.event_gap_s = event_gap_s

    def delay(self) -> float:
        if not self.jitter_s:
            return self.latency_s
        return max(self.latency_s + random.uniform(-self.jitter_s, self.jitter_s), 0.0)


class FakeUpstream(asyncio.Protocol):
    def __init__(self, options: Options) -> None:
        self._options = options
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None:
            request = self._take_request()
            if request is None:
                return
            self._answer(*request)

    def _take_request(self) -> tuple[bytes, bytes, bool] | None:
        """The next complete request as (request line, body, close), or None."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buffer[:end]
        lowered = head.lower()
        start = end + 4
        if b"transfer-encoding: chunked" in lowered:
            body, consumed = _dechunk(self._buffer, start)
            if body is None:
                return None
            rest = self._buffer[consumed:]
        else:
            at = lowered.find(b"content-length:")
            length = 0
            if at >= 0:
                line_end = lowered.find(b"\r\n", at)
                length = int(lowered[at + 15 : line_end if line_end >= 0 else None])
            if len(self._buffer) < start + length:
                return None
            body, rest = self._buffer[start : start + length], self._buffer[start + length :]
        self._buffer = rest
        line = head.split(b"\r\n", 1)[0]
        return line, body, b"connection: close" in lowered

    def _answer(self, line: bytes, body: bytes, close: bool) -> None:
        transport = self._transport
        assert transport is not None
        if not line.startswith(b"POST ") or b"/chat/completions" not in line:
            transport.write(NOT_FOUND)
            return
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = {}
        delay = self._options.delay()
        loop = asyncio.get_running_loop()
        if request.get("stream") is True:
            options = request.get("stream_options") or {}
            events = EVENTS[options.get("include_usage") is True]
            if delay:
                loop.call_later(delay, self._stream, transport, events, 0, close)
            else:
                self._stream(transport, events, 0, close)
            return
        if delay:
            loop.call_later(delay, self._finish, transport, COMPLETION, close)
        else:
            self._finish(transport, COMPLETION, close)

    def _stream(
        self, transport: asyncio.Transport, events: list[bytes], index: int, close: bool
    ) -> None:
        if transport.is_closing():
            return
        if index == 0:
            transport.write(STREAM_HEAD)
        gap = self._options.event_gap_s
        if not gap:
            for event in events:
                transport.write(event)  # one write per event, as a model emits them
            self._finish(transport, LAST_CHUNK, close)
            return
        transport.write(events[index])
        if index + 1 < len(events):
            loop = asyncio.get_running_loop()
            loop.call_later(gap, self._stream, transport, events, index + 1, close)
        else:
            self._finish(transport, LAST_CHUNK, close)

    @staticmethod
    def _finish(transport: asyncio.Transport, data: bytes, close: bool) -> None:
        if transport.is_closing():
            return
        transport.write(data)
        if close:
            transport.close()


def _dechunk(buffer: bytes, start: int) -> tuple[bytes | None, int]:
    """A chunked body from ``start``: (body, end offset), or (None, 0) while incomplete."""
    parts: list[bytes] = []
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None, 0
        size = int(buffer[at:line_end].split(b";", 1)[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", at)
            if trailer_end < 0:
                return None, 0
            return b"".join(parts), trailer_end + 2
        if len(buffer) < at + size + 2:
            return None, 0
        parts.append(buffer[at : at + size])
        at += size + 2


async def serve(host: str, port: int, options: Options) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeUpstream(options), host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"fake upstream on http://{host}:{port}/v1", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="before each answer")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± on the latency")
    parser.add_argument("--event-gap-ms", type=float, default=0.0, help="between stream events")
    args = parser.parse_args()
    options = Options(args.latency_ms / 1000, args.jitter_ms / 1000, args.event_gap_ms / 1000)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, options))
    else:
        uvloop.run(serve(args.host, args.port, options))


if __name__ == "__main__":
    main()
