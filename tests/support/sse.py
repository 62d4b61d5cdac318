"""Reading server-sent events as the tests receive them."""

from __future__ import annotations


def chunks_of(sse_text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [
        block[len("data: ") :]
        for block in sse_text.replace("\r\n", "\n").split("\n\n")
        if block.startswith("data: ")
    ]
