"""The content-addressed blob store: put from a stream with a cap, range reads, delete."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnirelay.store.blobs import BlobStore, BlobTooLarge


async def _stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(store: BlobStore, digest: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(digest, start, end)])


async def test_put_names_the_bytes_by_their_hash_and_reads_any_range(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(700_000)  # several read chunks
    blob = await store.put(_stream(data[:100], data[100:500_000], data[500_000:]), 1 << 20)

    assert blob.digest == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data) == store.size(blob.digest)
    assert await _read(store, blob.digest) == data
    assert await _read(store, blob.digest, 10, 20) == data[10:20]
    assert await _read(store, blob.digest, 699_990) == data[699_990:]
    assert await _read(store, blob.digest, 5, 5) == b""
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


async def test_the_same_bytes_twice_are_one_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = await store.put(_stream(b"same bytes"), 100)
    second = await store.put(_stream(b"same ", b"bytes"), 100)

    assert first == second
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


async def test_a_stream_past_the_cap_stores_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobTooLarge):
        await store.put(_stream(b"x" * 60, b"y" * 60), 100)

    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    blob = await store.put(_stream(b"z" * 100), 100)  # exactly the cap is allowed
    assert blob.size == 100


async def test_delete_spares_a_blob_put_again_within_the_grace(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, grace_s=60)
    blob = await store.put(_stream(b"video"), 100)

    assert not store.delete(blob.digest)  # just put: a new owner may be referencing it
    path = next(p for p in tmp_path.rglob(blob.digest))
    old = time.time() - 120
    os.utime(path, (old, old))
    assert store.delete(blob.digest)
    assert store.size(blob.digest) is None
    assert not store.delete(blob.digest)
    with pytest.raises(FileNotFoundError):
        await _read(store, blob.digest)


async def test_names_that_are_not_digests_never_reach_the_file_system(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.size("../../etc/passwd") is None
    assert not store.delete("../secret.key")
    with pytest.raises(ValueError):
        await _read(store, "../x")
