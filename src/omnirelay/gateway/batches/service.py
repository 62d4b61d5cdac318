"""What clients and operators do with files and batches: upload, read, list, delete; create,
read, list, cancel. A file or batch belongs to the key that made it: another key is told
it does not exist."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from typing import Any

from omnirelay.gateway.batches import model
from omnirelay.gateway.batches.runner import BatchLimits, BatchRunner
from omnirelay.gateway.batches.validate import parse_input
from omnirelay.gateway.keys import KeyState
from omnirelay.store.batches import BatchRepository, BatchRow
from omnirelay.store.blobs import BlobStore, BlobTooLarge
from omnirelay.store.files import FileRepository, FileRow
from omnirelay.wire.errors import Conflict, InvalidRequest, NotFound, RequestTooLarge

MAX_FILENAME = 256


class Batches:
    def __init__(
        self,
        *,
        batches: BatchRepository,
        files: FileRepository,
        blobs: BlobStore,
        runner: BatchRunner,
        completion_window_s: float,
    ) -> None:
        self._batches = batches
        self._files = files
        self._blobs = blobs
        self.runner = runner
        self._window_ms = int(completion_window_s * 1000)

    @property
    def limits(self) -> BatchLimits:
        return self.runner.limits

    # -- files --------------------------------------------------------------------------------

    async def upload(
        self, key: KeyState, purpose: str, filename: str, chunks: AsyncIterable[bytes]
    ) -> FileRow:
        """Store an uploaded file of ``purpose`` batch (JSONL, at most 200 MB and 50,000
        lines)."""
        if purpose != model.BATCH_PURPOSE:
            raise InvalidRequest(
                f"The purpose '{purpose[:64]}' is not supported here: only 'batch' files are.",
                param="purpose",
            )
        counted = _LineCount(chunks)
        try:
            blob = await self._blobs.put(counted, model.MAX_FILE_BYTES)
        except BlobTooLarge:
            raise RequestTooLarge(
                f"A batch file may be at most {model.MAX_FILE_BYTES // (1024 * 1024)} MB.",
                param="file",
            ) from None
        if counted.lines > model.MAX_LINES:
            raise InvalidRequest(
                f"A batch file may have at most {model.MAX_LINES} lines; this one has "
                f"{counted.lines}.",
                param="file",
            )
        now_ms = int(time.time() * 1000)
        file = FileRow(
            id=model.new_file_id(),
            key_id=key.id,
            purpose=purpose,
            filename=(filename or "upload.jsonl")[:MAX_FILENAME],
            bytes=blob.size,
            digest=blob.digest,
            lines=counted.lines,
            created_ms=now_ms,
            expires_ms=self.limits.file_expiry(now_ms),
        )
        await self._files.insert(file)
        return file

    async def file(self, key: KeyState | None, file_id: str) -> FileRow:
        """A key's own file (``key`` None: the operator's read, any key's file)."""
        file = await self._files.get(file_id)
        if file is None or (key is not None and file.key_id != key.id):
            raise NotFound(f"No such file: '{file_id[:64]}'.", param="file_id")
        return file

    async def files(
        self,
        key: KeyState,
        *,
        limit: int,
        after: str | None,
        purpose: str | None,
        ascending: bool,
    ) -> tuple[list[FileRow], bool]:
        cursor = None
        if after is not None:
            cursor = await self._files.get(after)
            if cursor is None or cursor.key_id != key.id:
                raise NotFound(f"No such file: '{after[:64]}'.", param="after")
        return await self._files.list_for_key(
            key.id, limit=limit, after=cursor, purpose=purpose, ascending=ascending
        )

    async def delete_file(self, key: KeyState, file_id: str) -> FileRow:
        file = await self.file(key, file_id)
        if await self._files.delete(file):
            self._blobs.delete(file.digest)
        return file

    async def content(
        self, key: KeyState | None, file_id: str
    ) -> tuple[FileRow, AsyncIterator[bytes]]:
        file = await self.file(key, file_id)
        if self._blobs.size(file.digest) is None:
            raise NotFound(f"The content of file '{file_id[:64]}' is no longer kept.")
        return file, self._blobs.read(file.digest)

    # -- batches ------------------------------------------------------------------------------

    async def create(
        self,
        key: KeyState,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, Any] | None,
    ) -> BatchRow:
        """Validate the input file and make the batch: in progress, or failed with the
        errors of its lines."""
        operation = model.ENDPOINTS.get(endpoint)
        if operation is None:
            raise InvalidRequest(
                f"The endpoint '{endpoint[:64]}' cannot be batched. Supported: "
                + ", ".join(model.ENDPOINTS)
                + ".",
                param="endpoint",
            )
        if completion_window not in model.COMPLETION_WINDOWS:
            raise InvalidRequest("The completion_window must be '24h'.", param="completion_window")
        file = await self._files.get(input_file_id)
        if file is None or file.key_id != key.id:
            raise NotFound(f"No such file: '{input_file_id[:64]}'.", param="input_file_id")
        if file.purpose != model.BATCH_PURPOSE:
            raise InvalidRequest(
                "The input file must have been uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        parsed = await parse_input(self._blobs.read(file.digest), endpoint, operation, key)
        now_ms = int(time.time() * 1000)
        values: dict[str, Any] = {
            "public_id": model.new_batch_id(),
            "key_id": key.id,
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "completion_window": completion_window,
            "metadata": metadata,
            "created_ms": now_ms,
            "expires_ms": now_ms + self._window_ms,
        }
        if parsed.errors:
            values |= {"status": model.FAILED, "errors": parsed.errors, "failed_ms": now_ms}
            return await self._batches.create(values, [])
        values |= {
            "status": model.IN_PROGRESS,
            "in_progress_ms": now_ms,
            "total": len(parsed.lines),
        }
        batch = await self._batches.create(values, parsed.lines)
        self.runner.wake()
        return batch

    async def batch(self, key: KeyState, batch_id: str) -> BatchRow:
        batch = await self._batches.get(batch_id)
        if batch is None or batch.key_id != key.id:
            raise NotFound(f"No such batch: '{batch_id[:64]}'.", param="batch_id")
        return await self.live(batch)

    async def live(self, batch: BatchRow) -> BatchRow:
        """A running batch with its lines counted as they are now."""
        if batch.status not in model.RUNNING:
            return batch
        counts = await self._batches.counts(batch.id, int(time.time() * 1000))
        return replace(batch, completed=counts.completed, failed=counts.failed)

    async def batches(
        self, key: KeyState, *, limit: int, after: str | None
    ) -> tuple[list[BatchRow], bool]:
        cursor = None
        if after is not None:
            cursor = await self._batches.get(after)
            if cursor is None or cursor.key_id != key.id:
                raise NotFound(f"No such batch: '{after[:64]}'.", param="after")
        rows, more = await self._batches.list_for_key(key.id, limit=limit, after=cursor)
        return [await self.live(row) for row in rows], more

    async def cancel(self, key: KeyState | None, batch_id: str) -> BatchRow:
        """Stop running new lines (``key`` None: the operator's cancel, any batch)."""
        batch = await self._batches.get(batch_id)
        if batch is None or (key is not None and batch.key_id != key.id):
            raise NotFound(f"No such batch: '{batch_id[:64]}'.", param="batch_id")
        if batch.status in (model.CANCELLING, model.CANCELLED):
            return await self.live(batch)
        moved = await self._batches.set_status(
            batch, model.CANCELLING, (model.VALIDATING, model.IN_PROGRESS), int(time.time() * 1000)
        )
        if moved is None:
            raise Conflict(
                f"The batch is {batch.status}: only a batch in progress can be cancelled.",
                param="batch_id",
            )
        self.runner.wake()
        return await self.live(moved)

    async def search(
        self, *, key_id: int | None, status: str | None, before_id: int | None, limit: int
    ) -> list[BatchRow]:
        rows = await self._batches.search(
            key_id=key_id, status=status, before_id=before_id, limit=limit
        )
        return [await self.live(row) for row in rows]

    async def models(self, batch: BatchRow) -> list[tuple[str, int]]:
        """The models its lines ask for and how many lines each (none: refused input)."""
        return await self._batches.models(batch.id)

    async def charged_nano(self, batch: BatchRow) -> int:
        """What its lines were charged so far, from the log rows that carry its id."""
        return await self._batches.charged_nano(batch.public_id)

    async def by_id(self, batch_id: str) -> BatchRow | None:
        batch = await self._batches.get(batch_id)
        return None if batch is None else await self.live(batch)


class _LineCount:
    """Passes a file's bytes on, counting its lines (a last line without an end too)."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.lines = 0
        self._last = b"\n"

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._count()

    async def _count(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if chunk:
                self.lines += chunk.count(b"\n")
                self._last = chunk[-1:]
            yield chunk
        if self._last != b"\n":
            self.lines += 1
