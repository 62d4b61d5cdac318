"""The operator's read of a batch file of any key: GET /admin/files/{file_id}/content, the
input, output or error file of a batch, with the admin key or an operator's console session
(the console's Batches page links to it; /v1/files/{id}/content answers only the file's
own key)."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.admin import _admin
from omnirelay.api.files import send_content


async def file_content(request: web.Request) -> web.StreamResponse:
    state, _ = await _admin(request)
    file, chunks = await state.batches.content(None, request.match_info["file_id"])
    return await send_content(request, file, chunks)
