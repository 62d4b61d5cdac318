"""The embedded PDF parser as a task dialect: a channel of type ``embedded`` with no
upstream at all (``base.LocalDialect``).

Its submit parses the PDF (``providers.pdf_parser``, in a worker process), keeps the pages'
text as one stored result (``segments``: JSON lines ``{"index", "content"}``) and ends the
task succeeded; the poller then closes it as any other, charging the pages it parsed at
the channel's page price (``task_actions.page``). A PDF with no text layer is the client's
error (422, nothing charged).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.pdf_parser import PdfParser, PdfParserFailed, PdfRefused
from omnirelay.providers.tasks.base import SUCCEEDED, Asset, Billable, Submission, TaskStatus
from omnirelay.providers.tasks.envelope import NoFindNoCancel
from omnirelay.wire.errors import GatewayError, UpstreamClientError, UpstreamError

SEGMENTS = "segments"
SEGMENTS_TYPE = "application/x-ndjson"
PAGE = "page"
Keep = Callable[[str, str], Awaitable[dict[str, Any]]]
"""Stores a file as a result: ``(path, content_type) -> {"digest", "size", "content_type"}``."""


class EmbeddedPdf(NoFindNoCancel):
    max_batch = 1

    def __init__(self, parser: PdfParser, keep: Keep) -> None:
        self._parser = parser
        self._keep = keep

    async def run(self, submission: Submission, upstream_model: str) -> TaskStatus:
        part = submission.upload.file("file") if submission.upload else None
        if part is None:
            raise UpstreamError("The embedded parser was given no PDF.")
        fd, out = tempfile.mkstemp(prefix="omnirelay-segments-")
        os.close(fd)
        try:
            try:
                parsed = await self._parser.parse(part.path, out)
            except PdfRefused as refused:
                error = {"type": "invalid_request_error", "code": refused.code, "param": "file"}
                raise UpstreamClientError(422, refused.message, error=error) from None
            except PdfParserFailed as failed:
                raise UpstreamError(str(failed)) from None
            segments = await self._keep(out, SEGMENTS_TYPE)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(out)
        outputs = {"pages": int(parsed["pages"]), "chars": int(parsed["chars"]), SEGMENTS: segments}
        return TaskStatus(
            SUCCEEDED, "parsed", 100, "local-" + secrets.token_hex(16), outputs=outputs
        )

    def status_of(self, upstream_id: str, outputs: Mapping[str, Any]) -> TaskStatus:
        return TaskStatus(SUCCEEDED, "parsed", 100, upstream_id, outputs=dict(outputs))

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        return UpstreamError(f"The embedded parser failed with {status}.")

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest:
        raise UpstreamError("The embedded parser has no upstream to call.")

    def submit_response(self, payload: bytes) -> TaskStatus:
        raise UpstreamError("The embedded parser has no upstream to answer.")

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        raise UpstreamError("The embedded parser has no upstream to poll.")

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        return {}

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        stored = status.outputs.get(SEGMENTS)
        return [Asset(SEGMENTS, None, stored=stored if isinstance(stored, dict) else {})]

    def hold_units(self, submission: Submission) -> Billable:
        return Billable("task_action", PAGE, _pages(submission.params.get("pages")))

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        pages = status.outputs.get("pages", submission.params.get("pages"))
        return Billable("task_action", PAGE, _pages(pages))

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        return min_s


def _pages(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 1
