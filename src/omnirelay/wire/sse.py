"""Server-sent events, split on the byte level so a relay does O(1) work per event."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

DONE = b"[DONE]"


async def iter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Yield each complete event (its raw bytes, without the blank line that ends it)."""
    async for batch in iter_event_batches(chunks):
        for event in batch:
            yield event


async def iter_event_batches(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """Yield the complete events of each read together, as soon as the read arrives.

    A relay that writes each batch at once makes one write for everything that arrived
    together, rather than one per event. Upstreams end events with ``\\n\\n``;
    ``\\r\\n`` framing is normalised first so a single separator search works for both.
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
        buffer += chunk
        batch = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            if end > start:
                batch.append(buffer[start:end])
            start = end + 2
        buffer = buffer[start:]
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


def encode(data: bytes) -> bytes:
    """One ``data:`` event ready to write to the client."""
    return b"data: " + data + b"\n\n"
