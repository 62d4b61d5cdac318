"""What a batch and a file are to a client: OpenAI's statuses, ids and object shapes."""

from __future__ import annotations

import secrets
from typing import Any

from omnirelay.gateway import chat, completions, embeddings, responses
from omnirelay.store.batches import BatchRow
from omnirelay.store.files import FileRow

VALIDATING, FAILED, IN_PROGRESS, FINALIZING = "validating", "failed", "in_progress", "finalizing"
COMPLETED, EXPIRED, CANCELLING, CANCELLED = "completed", "expired", "cancelling", "cancelled"
STATUSES = (VALIDATING, FAILED, IN_PROGRESS, FINALIZING, COMPLETED, EXPIRED, CANCELLING, CANCELLED)
RUNNING = (IN_PROGRESS, FINALIZING, CANCELLING)
"""Statuses whose batch a runner still has work on."""

ENDPOINTS = {
    "/v1/chat/completions": chat.ENDPOINT,
    "/v1/embeddings": embeddings.EMBEDDINGS,
    "/v1/completions": completions.ENDPOINT,
    "/v1/moderations": embeddings.MODERATIONS,
    "/v1/responses": responses.ENDPOINT,
}
"""The batch endpoints a client may name, and the operation each line runs."""

COMPLETION_WINDOWS = ("24h",)
BATCH_PURPOSE, OUTPUT_PURPOSE = "batch", "batch_output"
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_LINES = 50_000


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


def line_request_id(batch_public_id: str, line: int, tries: int = 0) -> str:
    """A line's request id: the same on every run of its call (after a crash too), so the
    ledger charges it once; a wait on a rate limit moves it on (``tries``)."""
    base = f"batch_req_{batch_public_id.removeprefix('batch_')}_{line}"
    return base if tries == 0 else f"{base}_{tries}"


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


def file_view(file: FileRow) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": file.created_ms // 1000,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
    }
    if file.expires_ms is not None:
        view["expires_at"] = file.expires_ms // 1000
    return view


def batch_view(batch: BatchRow) -> dict[str, Any]:
    """A batch as OpenAI shows one."""
    view: dict[str, Any] = {
        "id": batch.public_id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": batch.created_ms // 1000,
        "in_progress_at": _seconds(batch.in_progress_ms),
        "expires_at": batch.expires_ms // 1000,
        "finalizing_at": _seconds(batch.finalizing_ms),
        "completed_at": _seconds(batch.completed_ms),
        "failed_at": _seconds(batch.failed_ms),
        "expired_at": _seconds(batch.expired_ms),
        "cancelling_at": _seconds(batch.cancelling_ms),
        "cancelled_at": _seconds(batch.cancelled_ms),
        "request_counts": {
            "total": batch.total,
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "metadata": batch.metadata,
    }
    if batch.errors:
        view["errors"] = {"object": "list", "data": batch.errors}
    if batch.usage is not None:
        view["usage"] = batch.usage
    # What has not happened yet is left out (the spec types these fields without null).
    return {name: value for name, value in view.items() if value is not None or name == "metadata"}


def usage_view(input_tokens: int, output_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
