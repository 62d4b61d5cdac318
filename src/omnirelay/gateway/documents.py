"""Document processing (``/task/doc/pdf-parse``) as a task family: the PDF, checked.

A submit brings the PDF as a multipart ``file``, or names it by ``url`` (the gateway
fetches it through the SSRF guard, within the body size limit). Before anything is held
the PDF is opened in a worker process (``providers.pdf_parser``): an encrypted or damaged
PDF, or one of more than ``max_pdf_pages`` pages, is a 400 and no task. The page count is
what the task may cost (its hold: pages at the channel's page price); the channel, by
default the embedded parser, does the parsing. ``callback_url`` is the gateway's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from omnirelay.gateway.task_fields import (
    file_digest,
    idempotency,
    notify_url,
    request_hash,
    web_url,
)
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.providers.guarded import (
    FetchRefused,
    GuardedClient,
    any_address,
    public_address,
)
from omnirelay.providers.pdf_parser import PdfParser, PdfParserFailed, PdfRefused
from omnirelay.store.audit import GATEWAY, Actor, Audit
from omnirelay.store.errors import NameTaken
from omnirelay.store.store import Store
from omnirelay.wire.errors import InvalidRequest, MissingField, UpstreamUnavailable
from omnirelay.wire.uploads import FilePart, Upload

FAMILY = "task.doc"
ID_PREFIX = "doc_"
ENDPOINT = "task.doc"
DEFAULT_MODEL = "pdf-parse"
MAX_MODEL = 128
PDF_MAGIC = b"%PDF-"
FETCH_TIMEOUT_S = 60.0
EMBEDDED_TYPE = "embedded"
EMBEDDED_CHANNEL = "embedded-pdf"
EMBEDDED_BASE_URL = "embedded://pdf-parser"
STARTUP = Actor(GATEWAY, "startup")


async def ensure_embedded_channel(store: Store) -> None:
    """Make the embedded parser's channel (group ``default``, model ``pdf-parse``) when
    there is no channel of its type, enabled or not; an operator's edits are kept."""
    if any(channel.type == EMBEDDED_TYPE for channel in await store.channels.list_all()):
        return
    audit = Audit(STARTUP, "create", {"reason": "the embedded PDF parser"})
    with contextlib.suppress(NameTaken):  # another process made it first
        await store.channels.create(
            name=EMBEDDED_CHANNEL,
            type=EMBEDDED_TYPE,
            base_url=EMBEDDED_BASE_URL,
            api_key="-",
            models=[DEFAULT_MODEL],
            audit=audit,
        )


class Documents:
    """Checks PDFs for the family, fetching the ones given by URL."""

    def __init__(self, parser: PdfParser, *, max_bytes: int, allow_private: bool) -> None:
        self.parser = parser
        self._max_bytes = max_bytes
        self._allow_private = allow_private
        self._client = GuardedClient(
            timeout_s=FETCH_TIMEOUT_S, allowed=any_address if allow_private else public_address
        )

    async def start(self) -> None:
        await self._client.start()

    async def close(self) -> None:
        await self._client.close()

    async def submit_request(
        self,
        family: Family,
        fields: Mapping[str, Any],
        upload: Upload,
        *,
        idempotency_key: str | None,
    ) -> TaskRequest:
        """The submit, with the PDF as ``upload``'s ``file`` (fetched into it when it came
        by URL: the caller discards the upload's files, those too)."""
        part = upload.file("file")
        url = fields.get("url") or None
        if part is not None and url is not None:
            raise InvalidRequest("Send either 'file' or 'url', not both.", param="url")
        if part is None and url is None:
            raise MissingField("Missing the PDF: send 'file' or 'url'.", param="file")
        if part is None:
            part = await self._fetch(web_url(url, "url", self._allow_private))
            upload.files.append(part)
        pages = await self._pages(part)
        model = fields.get("model") or DEFAULT_MODEL
        if not isinstance(model, str) or len(model) > MAX_MODEL:
            raise InvalidRequest("'model' must be a model name.", param="model")
        notify = notify_url(fields, allow_private=self._allow_private)
        params = {"pages": pages}
        source = {"file": part.filename[:256], "bytes": part.size}
        if url is not None:
            source["url"] = str(url)[:2048]
        return TaskRequest(
            family=family,
            action="pdf-parse",
            model=model,
            params=params,
            stored={**params, "source": source},
            upload=Upload([], [part]),
            notify_url=notify,
            idempotency_key=idempotency(idempotency_key),
            request_hash=request_hash("pdf-parse", model, params, notify, file_digest(part.path)),
        )

    async def _pages(self, part: FilePart) -> int:
        if PDF_MAGIC not in _head(part.path):
            raise InvalidRequest(
                "The file is not a PDF (it does not start with %PDF-).",
                param="file",
                code="pdf_invalid",
            )
        try:
            return await self.parser.inspect(part.path)
        except PdfRefused as refused:
            raise InvalidRequest(refused.message, param="file", code=refused.code) from None
        except PdfParserFailed as failed:
            raise UpstreamUnavailable(f"The PDF could not be opened: {failed}") from None

    async def _fetch(self, url: str) -> FilePart:
        fd, path = tempfile.mkstemp(prefix="omnirelay-pdf-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as file:
                async with self._client.open(url, self._max_bytes) as opened:
                    async for chunk in opened.chunks:
                        size += len(chunk)
                        file.write(chunk)
        except FetchRefused as refused:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise InvalidRequest(
                f"The PDF at 'url' could not be fetched: it {refused}.",
                param="url",
                code="invalid_url",
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        name = url.rsplit("/", 1)[-1][:128] or "document.pdf"
        return FilePart("file", name, "application/pdf", path, size)


def _head(path: str) -> bytes:
    """A file's first bytes (a PDF may have some junk before its header)."""
    with open(path, "rb") as file:
        return file.read(1024)
