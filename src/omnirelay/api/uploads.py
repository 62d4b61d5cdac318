"""Reading a multipart upload: fields in memory, each file spooled to disk as it arrives.

A file is never held whole in memory, and reading stops with a 413 as soon as the upload
passes the size limit. The caller deletes the spooled files (``Upload.discard``).
"""

from __future__ import annotations

import os
import tempfile
import zlib

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from omnirelay.wire.errors import InvalidRequest, RequestTooLarge
from omnirelay.wire.uploads import FilePart, Upload

CHUNK = 64 * 1024
MAX_FIELD_BYTES = 1024 * 1024
# What aiohttp's multipart reader raises on a body that is not well-formed multipart: a
# missing or wrong boundary, a truncated part, a part encoding it cannot undo (base64,
# gzip, an unknown one), too many part headers.
MALFORMED = (ValueError, RuntimeError, zlib.error, HttpProcessingError)


async def read_upload(request: web.Request, limit: int) -> Upload:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            "This endpoint takes a multipart/form-data body with the file to upload.",
            code="invalid_content_type",
        )
    upload = Upload()
    try:
        await _read_parts(request, upload, limit)
    except MALFORMED as exc:
        upload.discard()
        raise InvalidRequest(
            f"The multipart/form-data body could not be read: {exc}. Send the fields and "
            "files as multipart/form-data parts, between the boundary the Content-Type names.",
            code="invalid_multipart",
        ) from exc
    except BaseException:
        upload.discard()
        raise
    return upload


async def _read_parts(request: web.Request, upload: Upload, limit: int) -> None:
    reader = await request.multipart()
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is None:
            value = await part.read(decode=True)
            total += len(value)
            if total > limit or len(value) > MAX_FIELD_BYTES:
                raise _too_large(limit)
            upload.fields.append((part.name, value.decode("utf-8", errors="replace")))
            continue
        total = await _spool(part, upload, total, limit)


async def _spool(part: BodyPartReader, upload: Upload, total: int, limit: int) -> int:
    fd, path = tempfile.mkstemp(prefix="omnirelay-upload-")
    size = 0
    content_type = part.headers.get("Content-Type", "application/octet-stream")
    upload.files.append(FilePart(str(part.name), part.filename or "file", content_type, path, 0))
    with os.fdopen(fd, "wb") as file:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if total + size > limit:
                raise _too_large(limit)
            file.write(chunk)
    upload.files[-1] = FilePart(str(part.name), part.filename or "file", content_type, path, size)
    return total + size


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The upload is larger than the {limit} bytes this gateway accepts. Send a smaller file."
    )
