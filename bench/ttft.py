"""Time to first token: one keep-alive connection, streams one after another.

A raw asyncio client, so its own cost is small and the same for every target: it sends the
request and notes when the first ``data:`` byte arrives, then reads the stream to its end.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

END = b"\r\n0\r\n\r\n"


def _request(host: str, port: int, path: str, body: dict[str, Any], key: str | None) -> bytes:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _measure(
    host: str, port: int, path: str, body: dict[str, Any], key: str | None, count: int
) -> list[float]:
    request = _request(host, port, path, body, key)
    reader, writer = await asyncio.open_connection(host, port)
    firsts: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            seen = b""
            first: float | None = None
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                seen += data
                if first is None and b"data:" in seen:
                    first = time.perf_counter() - started
                if seen.endswith(END):
                    break
            if not seen.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"stream refused: {seen[:200]!r}")
            firsts.append(first or 0.0)
    finally:
        writer.close()
    return firsts


def ttft_us(
    host: str, port: int, path: str, body: dict[str, Any], key: str | None, count: int = 300
) -> tuple[float, float]:
    """The p50 and p99 of the time to the first ``data:`` byte, in microseconds."""
    firsts = asyncio.run(_measure(host, port, path, body, key, count + 20))[20:]  # warm-up
    firsts.sort()
    p99 = firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))]
    return statistics.median(firsts) * 1e6, p99 * 1e6
