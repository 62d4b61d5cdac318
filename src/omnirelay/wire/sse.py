"""Server-sent events, split on the byte level so a relay does O(1) work per event."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

DONE = b"[DONE]"
UNBOUNDED = 1 << 62


class EventTooLarge(ValueError):
    """One event grew past the size a reader allows: the stream is not to be trusted."""


async def iter_events(
    chunks: AsyncIterable[bytes], max_event_bytes: int = UNBOUNDED
) -> AsyncIterator[bytes]:
    """Yield each complete event (its raw bytes, without the blank line that ends it)."""
    async for batch in iter_event_batches(chunks, max_event_bytes):
        for event in batch:
            yield event


async def iter_event_batches(
    chunks: AsyncIterable[bytes], max_event_bytes: int = UNBOUNDED
) -> AsyncIterator[list[bytes]]:
    """Yield the complete events of each read together, as soon as the read arrives.

    A relay that writes each batch at once makes one write for everything that arrived
    together, rather than one per event. Upstreams end events with ``\\n\\n``;
    ``\\r\\n`` framing is normalised first so a single separator search works for both.

    An event still incomplete past ``max_event_bytes`` raises :class:`EventTooLarge`, so a
    hostile upstream cannot make the reader buffer without bound. Each read is searched
    once: only the new bytes (and the one before them) are scanned for a separator.
    """
    buffer = b""
    held_cr = False
    async for chunk in chunks:
        if held_cr:
            chunk = b"\r" + chunk
        # A CRLF may be split across two reads: hold a trailing CR for the next one.
        held_cr = chunk.endswith(b"\r")
        if held_cr:
            chunk = chunk[:-1]
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        scan_from = max(len(buffer) - 1, 0)
        buffer += chunk
        oversized = len(buffer) > max_event_bytes
        batch = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", max(start, scan_from))
            if end < 0:
                break
            if end > start:
                batch.append(buffer[start:end])
            start = end + 2
        buffer = buffer[start:]
        if oversized and (
            len(buffer) > max_event_bytes or any(len(e) > max_event_bytes for e in batch)
        ):
            raise EventTooLarge(f"an event passed {max_event_bytes} bytes")
        if batch:
            yield batch
    if buffer.strip():
        yield [buffer.strip()]


def event_data(event: bytes) -> bytes | None:
    """The payload of an event's ``data:`` lines, or None for comments and other fields."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].lstrip(b" ")
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def json_object(data: bytes) -> dict[str, Any] | None:
    """An event's data as a JSON object; None for anything else (an upstream's garbage)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def encode(data: bytes) -> bytes:
    """One ``data:`` event ready to write to the client."""
    return b"data: " + data + b"\n\n"
