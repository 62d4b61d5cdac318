"""The batch lines' leases on SQLite and PostgreSQL: two processes claiming one batch never
get the same line, a line is finished only by its lease holder, a dead process's lines come
back when their lease runs out, and a stopping process gives its lines back."""

from __future__ import annotations

import asyncio

from sqlalchemy import insert

from omnirelay.store.batches import ERROR, OUTPUT, LineEnd
from omnirelay.store.files import FileRow
from omnirelay.store.tables import request_logs
from support.store_backend import Backend

NOW = 1_700_000_000_000
LEASE = 60_000


def _batch(public_id: str) -> dict[str, object]:
    return {
        "public_id": public_id, "key_id": 1, "endpoint": "/v1/chat/completions",
        "input_file_id": "file-x", "completion_window": "24h", "status": "in_progress",
        "created_ms": NOW, "in_progress_ms": NOW, "expires_ms": NOW + 86_400_000, "total": 50,
    }  # fmt: skip


def _lines(count: int) -> list[dict[str, object]]:
    return [
        {"line": i, "custom_id": f"c{i}", "model": "gpt-4o", "body": "{}"} for i in range(count)
    ]


async def test_two_processes_claim_disjoint_lines(backend: Backend) -> None:
    first, second = backend.store, await backend.open()
    batch = await first.batches.create(_batch("batch_a"), _lines(50))
    claims = await asyncio.gather(
        *(
            (first if i % 2 else second).batches.claim_lines(batch.id, f"p{i}", NOW, LEASE, 7)
            for i in range(10)
        )
    )
    taken = [line.line for claim in claims for line in claim]
    assert len(taken) == len(set(taken)) == 50
    counts = await first.batches.counts(batch.id, NOW)
    assert (counts.pending, counts.claimed) == (0, 50)


async def test_a_line_is_finished_by_its_lease_holder_only(backend: Backend) -> None:
    store = backend.store
    batch = await store.batches.create(_batch("batch_b"), _lines(3))
    mine = await store.batches.claim_lines(batch.id, "me", NOW, LEASE, 2)
    assert [line.line for line in mine] == [0, 1]
    ends = [LineEnd(batch.id, line.line, OUTPUT, f'{{"n":{line.line}}}', 3, 4) for line in mine]
    await store.batches.finish_lines("someone-else", ends)
    assert await store.batches.done_lines(batch.id, -1, 10) == []
    await store.batches.finish_lines("me", ends)
    # Finished once: a late repeat changes nothing.
    await store.batches.finish_lines("me", [LineEnd(batch.id, 0, ERROR, "{}")])
    done = await store.batches.done_lines(batch.id, -1, 10)
    assert done == [(0, OUTPUT, '{"n":0}'), (1, OUTPUT, '{"n":1}')]
    counts = await store.batches.counts(batch.id, NOW)
    assert (counts.pending, counts.claimed, counts.completed) == (1, 0, 2)
    assert await store.batches.usage(batch.id) == (6, 8, 0)


async def test_dead_leases_come_back_and_released_lines_are_pending(backend: Backend) -> None:
    store = backend.store
    batch = await store.batches.create(_batch("batch_c"), _lines(4))
    dead = await store.batches.claim_lines(batch.id, "dead", NOW, LEASE, 2)
    assert len(dead) == 2
    # Still leased: another process gets only the other two.
    alive = await store.batches.claim_lines(batch.id, "alive", NOW + 1, LEASE, 10)
    assert [line.line for line in alive] == [2, 3]
    assert (await store.batches.counts(batch.id, NOW + LEASE + 1)).pending == 2
    taken_over = await store.batches.claim_lines(batch.id, "alive", NOW + LEASE + 1, LEASE, 10)
    assert [line.line for line in taken_over] == [0, 1]
    # The dead process's late answer is not recorded.
    await store.batches.finish_lines("dead", [LineEnd(batch.id, 0, OUTPUT, "{}")])
    assert await store.batches.done_lines(batch.id, -1, 10) == []
    assert await store.batches.release_lines("alive") == 4
    again = await store.batches.claim_lines(batch.id, "next", NOW + LEASE + 2, LEASE, 10)
    assert [line.line for line in again] == [0, 1, 2, 3]


async def test_files_expire_and_their_blob_goes_with_the_last_reference(backend: Backend) -> None:
    files = backend.store.files
    digest = "ab" * 32

    def file(file_id: str, expires_ms: int | None) -> FileRow:
        return FileRow(
            id=file_id, key_id=1, purpose="batch", filename="a.jsonl", bytes=3, digest=digest,
            lines=1, created_ms=NOW, expires_ms=expires_ms,
        )  # fmt: skip

    old, kept, forever = file("file-old", NOW + 10), file("file-new", NOW + 99), file("f", None)
    for row in (old, kept, forever):
        await files.insert(row)
    assert [f.id for f in await files.expired(NOW + 50)] == ["file-old"]
    assert await files.delete(old) is False  # the same bytes are still another file's
    assert await files.get("file-old") is None
    assert await files.delete(kept) is False
    assert await files.delete(forever) is True
    rows, more = await files.list_for_key(1, limit=10)
    assert (rows, more) == ([], False)


async def test_a_line_whose_id_has_a_failed_call_logged_moves_on_to_its_next_try(
    backend: Backend,
) -> None:
    """A process that died after a failed try's row was written, but before the line's
    try was noted, leaves the id used: the next claim moves the line on, so that its
    answer's charge does not collide with the free row."""
    store = backend.store
    batch = await store.batches.create(_batch("batch_t"), _lines(3))

    def request_id(line: int, tries: int) -> str:
        return f"req_t_{line}" + (f"_{tries}" if tries else "")

    logged = [("req_t_0", 503), ("req_t_1", 200)]  # line 0 failed, line 1 was answered
    async with store.engine.begin() as connection:
        for rid, status in logged:
            await connection.execute(
                insert(request_logs).values(request_id=rid, created_ms=NOW, key_id=1,
                                            endpoint="chat.completions", status=status)
            )  # fmt: skip
    claimed = await store.batches.claim_lines(batch.id, "me", NOW, LEASE, 3, request_id)
    assert {line.line: line.tries for line in claimed} == {0: 1, 1: 0, 2: 0}
    # Noted in the row: a later claim starts from there too.
    again = await store.batches.claim_lines(batch.id, "next", NOW + LEASE + 1, LEASE, 3)
    assert {line.line: line.tries for line in again} == {0: 1, 1: 0, 2: 0}
