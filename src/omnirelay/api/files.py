"""OpenAI's Files API for batches: POST /v1/files (multipart, streamed to the blob store),
GET /v1/files, GET /v1/files/{file_id}, GET /v1/files/{file_id}/content and
DELETE /v1/files/{file_id}. A key sees only its own files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from omnirelay.api.begin import begin_with, no_body
from omnirelay.api.body import bearer_secret
from omnirelay.api.state import AppState, state_of
from omnirelay.api.uploads import MALFORMED
from omnirelay.gateway.batches.model import BATCH_PURPOSE, file_view
from omnirelay.gateway.keys import KeyCache
from omnirelay.store.files import FileRow
from omnirelay.wire.errors import InvalidRequest, MissingField

DEFAULT_PAGE = 10_000
MAX_PAGE = 10_000
READ_SIZE = 256 * 1024
MAX_FIELD_BYTES = 1024


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _key(request: web.Request) -> tuple[AppState, Any]:
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    KeyCache.authorize_ip(key, request.remote)
    return state, key


async def upload(request: web.Request) -> web.Response:
    """The multipart body is read part by part: the file streams to disk, never whole into
    memory, so its cap is the batch file's (200 MB), not the request body limit."""
    state, key = _key(request)
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            "POST /v1/files takes a multipart/form-data body with 'purpose' and 'file'."
        )
    purpose: str | None = None
    stored = None
    try:
        reader = await request.multipart()
        async for part in _parts(reader):
            if part.name == "purpose":
                purpose = (await _field(part)).decode("utf-8", "replace")
            elif part.name == "file" and stored is None:
                # The SDKs send 'purpose' before the file; a file sent first is stored as
                # a batch file and its purpose checked below, once it has arrived.
                stored = await state.batches.upload(
                    key, purpose or BATCH_PURPOSE, part.filename or "upload.jsonl", _chunks(part)
                )
            else:
                await part.release()
    except MALFORMED as exc:
        if stored is not None:
            await state.batches.delete_file(key, stored.id)
        raise InvalidRequest(
            f"The multipart/form-data body could not be read: {exc}. Send 'purpose' and "
            "'file' as multipart/form-data parts, between the boundary the Content-Type names.",
            code="invalid_multipart",
        ) from exc
    if stored is None:
        raise MissingField("Missing required parameter: 'file'.", param="file")
    if purpose != stored.purpose:
        await state.batches.delete_file(key, stored.id)
        if purpose is None:
            raise MissingField("Missing required parameter: 'purpose'.", param="purpose")
        raise InvalidRequest(
            f"The purpose '{purpose[:64]}' is not supported here: only 'batch' files are.",
            param="purpose",
        )
    return _json(file_view(stored))


async def _parts(reader: Any) -> AsyncIterator[BodyPartReader]:
    while True:
        part = await reader.next()
        if part is None:
            return
        if isinstance(part, BodyPartReader):
            yield part
        # A nested multipart part is no field of this form: passed over.


async def _field(part: BodyPartReader) -> bytes:
    """A form field's value, read no further than MAX_FIELD_BYTES."""
    value = b""
    while len(value) <= MAX_FIELD_BYTES and (chunk := await part.read_chunk(MAX_FIELD_BYTES)):
        value += chunk
    if len(value) > MAX_FIELD_BYTES:
        raise InvalidRequest(f"A form field may be at most {MAX_FIELD_BYTES} bytes.")
    return value


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(READ_SIZE)
        if not chunk:
            return
        yield chunk


async def retrieve(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "files.retrieve", no_body)
    return _json(file_view(await state.batches.file(call.key, request.match_info["file_id"])))


async def list_files(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "files.list", no_body)
    query = request.query
    try:
        limit = int(query.get("limit", DEFAULT_PAGE))
    except ValueError as exc:
        raise InvalidRequest("'limit' must be an integer.", param="limit") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_PAGE}.", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    rows, more = await state.batches.files(
        call.key,
        limit=limit,
        after=query.get("after") or None,
        purpose=query.get("purpose") or None,
        ascending=order == "asc",
    )
    data = [file_view(file) for file in rows]
    return _json(_page(data, more))


def _page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    page: dict[str, Any] = {"object": "list", "data": data, "has_more": more}
    page["first_id"] = data[0]["id"] if data else ""
    page["last_id"] = data[-1]["id"] if data else ""
    return page


async def delete(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "files.delete", no_body)
    file = await state.batches.delete_file(call.key, request.match_info["file_id"])
    return _json({"id": file.id, "object": "file", "deleted": True})


async def content(request: web.Request) -> web.StreamResponse:
    state, call, _ = await begin_with(request, "files.content", no_body)
    file, chunks = await state.batches.content(call.key, request.match_info["file_id"])
    return await send_content(request, file, chunks)


async def send_content(
    request: web.Request, file: FileRow, chunks: AsyncIterator[bytes]
) -> web.StreamResponse:
    """A file's bytes, streamed as an attachment (to its key, or to an operator)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/jsonl",
            "Content-Disposition": f'attachment; filename="{file.id}.jsonl"',
        }
    )
    response.content_length = file.bytes
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
