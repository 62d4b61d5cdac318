"""Content-addressed files under ``<data_dir>/blobs``: task results now, batch files next.

A blob is named by the SHA-256 of its bytes and kept at ``blobs/ab/cd/<digest>``, so the
same bytes stored twice are one file. :meth:`BlobStore.put` writes from an async byte
stream into a temporary file beside its final place, hashing and counting as it goes,
stops past a size cap, and publishes the file with an atomic rename once it is on disk.
:meth:`BlobStore.read` yields any byte range of a blob.

Who still wants a blob is recorded in the database (``blob_refs``, written with the rows
that own them); the store itself only keeps files. :meth:`BlobStore.delete` removes a file,
unless it was put again within ``grace_s``: a put refreshes the file's time, so a blob
that a new owner is about to reference is never deleted under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

READ_SIZE = 256 * 1024
DIGEST = re.compile(r"[0-9a-f]{64}")


class BlobTooLarge(Exception):
    """The stream passed the size cap; nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the {limit} bytes allowed")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str
    """The SHA-256 of the bytes, in lower-case hex."""
    size: int


class BlobStore:
    def __init__(self, root: Path, *, grace_s: float = 3600.0) -> None:
        self.root = root
        self._grace_s = grace_s

    async def put(self, chunks: AsyncIterable[bytes], max_bytes: int) -> Blob:
        """Store the stream's bytes; BlobTooLarge past ``max_bytes`` (nothing is kept)."""
        staging = self.root / "tmp" / f"{secrets.token_hex(8)}.part"
        staging.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        file = await asyncio.to_thread(open, staging, "wb")
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobTooLarge(max_bytes)
                    digest.update(chunk)
                    # Local writes land in the page cache: microseconds, not worth a thread.
                    file.write(chunk)
                file.flush()
                await asyncio.to_thread(os.fsync, file.fileno())
            finally:
                file.close()
            blob = Blob(digest.hexdigest(), size)
            final = self._path(blob.digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, final)  # same bytes already there: the same file again
        except BaseException:
            with contextlib.suppress(OSError):
                staging.unlink()
            raise
        return blob

    def size(self, digest: str) -> int | None:
        """The blob's size, or None when it is not stored."""
        try:
            return self._path(digest).stat().st_size
        except (OSError, ValueError):
            return None

    async def read(
        self, digest: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of a blob (``end`` None: to its end).

        Raises FileNotFoundError when the blob is not stored.
        """
        file = await asyncio.to_thread(open, self._path(digest), "rb")
        try:
            await asyncio.to_thread(file.seek, start)
            left = None if end is None else max(end - start, 0)
            while left is None or left > 0:
                size = READ_SIZE if left is None else min(READ_SIZE, left)
                chunk = await asyncio.to_thread(file.read, size)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            file.close()

    def settled(self) -> list[str]:
        """Every blob not put within the grace period: those ``delete`` may remove."""
        cutoff = time.time() - self._grace_s
        found: list[str] = []
        for path in self.root.glob("??/??/*"):
            try:
                if DIGEST.fullmatch(path.name) and path.stat().st_mtime < cutoff:
                    found.append(path.name)
            except OSError:
                continue  # deleted meanwhile
        return found

    def delete(self, digest: str) -> bool:
        """Remove a blob's file; False when it is absent or was put again lately."""
        try:
            path = self._path(digest)
            if time.time() - path.stat().st_mtime < self._grace_s:
                return False
            path.unlink()
        except (OSError, ValueError):
            return False
        return True

    def _path(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):
            raise ValueError("not a blob digest")
        return self.root / digest[:2] / digest[2:4] / digest
