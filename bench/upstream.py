"""A fast fake OpenAI upstream: a raw asyncio HTTP/1.1 server, run in its own process.

``POST .../chat/completions`` answers the seed's response, or, for ``"stream": true``, the
23-event stream of ``seed.stream_chunks`` then ``[DONE]``, each event written on its own
(as a model emits them). Anything else gets a 404. Keep-alive, Content-Length and chunked
request bodies; no pipelining beyond what arrives in order. Lean on purpose: the harness
measures the gateway, so the upstream must cost as little CPU as it can.

    python -m bench.upstream --port 9100 [--latency-ms 0] [--jitter-ms 0] [--event-gap-ms 0]

A jitter spreads the latency uniformly over latency ± jitter, so that closed-loop
connections do not fall into step and reach the gateway all at once.

Hostile answers, for ``bench.hostile``, are chosen by a field of the request (the gateway
passes unknown fields through): ``"bench_answer": "long-stream"`` streams
``bench_tokens`` one-token content chunks (default 100,000) and a usage chunk;
``"huge-body"`` is a chunked non-stream answer of ``bench_bytes``; ``"huge-event"`` is a
stream whose second event is ``bench_bytes`` long. They are produced on the fly, in
blocks of about 64 KiB, as fast as the reader takes them (the transport's flow control),
and never held whole. ``GET /bench/sent`` lists each hostile answer: the bytes written
into the socket (less what was still buffered when the reader stopped), and whether the
connection has closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

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

# -- hostile answers, produced on the fly --------------------------------------------------

BLOCK_BYTES = 64 * 1024
# Each is one o200k token, so the gateway's count of the text agrees with the usage chunk.
WORDS = (" the", " of", " and", " to", " in", " a", " is", " that", " for", " it", " on",
         " with", " as", " was", " at", " by")  # fmt: skip
BLOCK_EVENTS = 256  # content events per write: ~60 KiB
JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    b"x-request-id: req_fake\r\n\r\n"
)


@dataclass
class Sent:
    """What one hostile answer has written so far."""

    answer: str
    wanted_bytes: int
    written_bytes: int = 0
    buffered_bytes: int = 0  # still in the transport's buffer when it last paused
    finished: bool = False
    closed: bool = False
    started: float = 0.0
    seconds: float = 0.0

    @property
    def sent_bytes(self) -> int:
        return self.written_bytes - self.buffered_bytes


SENT: list[Sent] = []


def _data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def long_stream(tokens: int, include_usage: bool) -> Iterator[bytes]:
    """The role chunk, ``tokens`` one-token content chunks, the finish (and usage) chunk."""
    chunks = stream_chunks(include_usage)
    first, template = chunks[0], chunks[1]
    finish = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    choice = template["choices"][0]

    def content(word: str) -> bytes:
        return _data(
            orjson.dumps({**template, "choices": [{**choice, "delta": {"content": word}}]})
        )

    yield STREAM_HEAD + _chunked(_data(orjson.dumps(first)))
    block = [content(WORDS[i % len(WORDS)]) for i in range(BLOCK_EVENTS)]
    whole = _chunked(b"".join(block))
    for _ in range(tokens // BLOCK_EVENTS):
        yield whole
    rest = tokens % BLOCK_EVENTS
    tail = [*block[:rest], _data(orjson.dumps(finish))]
    if include_usage:
        usage = {**SEED_RESPONSE["usage"], "completion_tokens": tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + tokens
        tail.append(_data(orjson.dumps({**template, "choices": [], "usage": usage})))
    tail.append(b"data: [DONE]\n\n")
    yield _chunked(b"".join(tail)) + LAST_CHUNK


def huge_body(size: int) -> Iterator[bytes]:
    """A chat completion whose content is ``size`` bytes of filler, chunked."""
    yield JSON_HEAD + _chunked(
        b'{"id":"chatcmpl-huge","object":"chat.completion","created":1,"model":"gpt-4o",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"'
    )
    yield from _filler(size)
    usage = orjson.dumps(SEED_RESPONSE["usage"])
    yield _chunked(b'"},"finish_reason":"stop"}],"usage":' + usage + b"}") + LAST_CHUNK


def huge_event(size: int) -> Iterator[bytes]:
    """A stream whose second event is ``size`` bytes without a blank line until its end."""
    first = stream_chunks(False)[0]
    yield STREAM_HEAD + _chunked(_data(orjson.dumps(first)) + b'data: {"padding":"')
    yield from _filler(size)
    yield _chunked(b'"}\n\ndata: [DONE]\n\n') + LAST_CHUNK


def _filler(size: int) -> Iterator[bytes]:
    block = _chunked(b"x" * BLOCK_BYTES)
    for _ in range(size // BLOCK_BYTES):
        yield block
    if size % BLOCK_BYTES:
        yield _chunked(b"x" * (size % BLOCK_BYTES))


def _hostile(request: dict[str, object]) -> tuple[Sent, Iterator[bytes]] | None:
    answer = request.get("bench_answer")
    if answer is None:
        return None
    tokens = request.get("bench_tokens", 100_000)
    size = request.get("bench_bytes", 2 << 30)
    assert isinstance(tokens, int) and isinstance(size, int)
    if answer == "long-stream":
        options = request.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return Sent(answer, tokens), long_stream(tokens, usage)
    if answer == "huge-body":
        return Sent(answer, size), huge_body(size)
    if answer == "huge-event":
        return Sent(answer, size), huge_event(size)
    raise ValueError(f"unknown bench_answer {answer!r}")


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
        self._paused = False
        self._producer: tuple[Sent, Iterator[bytes], bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._producer is not None:
            self._producer[0].closed = True
            self._producer = None

    def pause_writing(self) -> None:
        self._paused = True
        if self._producer is not None and self._transport is not None:
            self._producer[0].buffered_bytes = self._transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve()

    def _serve(self) -> None:
        # While a hostile answer is being written, the next request waits for its end.
        while self._transport is not None and self._producer is None:
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
        if line.startswith(b"GET /bench/sent "):
            listing = [{**asdict(s), "sent_bytes": s.sent_bytes} for s in SENT]
            transport.write(_response("200 OK", "application/json", orjson.dumps(listing)))
            return
        if not line.startswith(b"POST ") or b"/chat/completions" not in line:
            transport.write(NOT_FOUND)
            return
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = {}
        hostile = _hostile(request)
        if hostile is not None:
            sent, parts = hostile
            sent.started = time.monotonic()
            SENT.append(sent)
            self._producer = (sent, parts, close)
            self._pump()
            return
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

    def _pump(self) -> None:
        """Write the hostile answer's next parts until the transport asks for a pause."""
        while self._producer is not None and not self._paused:
            transport = self._transport
            sent, parts, close = self._producer
            if transport is None or transport.is_closing():
                return
            part = next(parts, None)
            if part is None:
                sent.finished, sent.buffered_bytes = True, 0
                sent.seconds = time.monotonic() - sent.started
                self._producer = None
                if close:
                    transport.close()
                self._serve()
                return
            sent.written_bytes += len(part)
            sent.seconds = time.monotonic() - sent.started
            transport.write(part)

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
