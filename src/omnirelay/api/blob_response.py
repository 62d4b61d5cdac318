"""A stored blob as an HTTP answer, whole or one byte range (``Range: bytes=...``).

One range is served as 206 with ``Content-Range``; a range past the end is 416; a header
that asks for several ranges, or is not understood, gets the whole blob, as HTTP allows.
The blob's type is trusted for what it is shown as, never to run: every answer is sandboxed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from omnirelay.store.blobs import BlobStore
from omnirelay.wire.errors import NotFound

RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def blob_response(
    request: web.Request, blobs: BlobStore, asset: Mapping[str, Any], filename: str
) -> web.StreamResponse:
    digest = str(asset["digest"])
    size = blobs.size(digest)
    if size is None:
        raise NotFound("The stored result is no longer available.")
    span = _range(request.headers.get("Range"), size)
    headers = {
        "Content-Type": str(asset.get("content_type") or "application/octet-stream"),
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Content-Disposition": f'inline; filename="{filename}"',
        # The type is the upstream's word: a result opened on its own (HTML, SVG) must not
        # run as a page of this origin, where console sessions live.
        "Content-Security-Policy": "sandbox",
        "X-Content-Type-Options": "nosniff",
    }
    if span is None:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers)
    start, end = span
    status = 200
    if (start, end) != (0, size):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in blobs.read(digest, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` to send; None when the one range asked for cannot be served."""
    if not header:
        return 0, size
    found = RANGE.fullmatch(header.strip())
    if found is None:
        return 0, size  # several ranges, or another unit: the whole blob
    first, last = found.groups()
    if not first and not last:
        return 0, size
    if not first:  # the last N bytes
        length = min(int(last), size)
        return (size - length, size) if length else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        return None
    return start, end
