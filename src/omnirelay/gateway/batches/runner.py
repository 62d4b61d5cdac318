"""The batch runner: every process runs batch lines; there is no master node.

Each tick looks at the running batches. For a batch in progress it claims pending lines
(``BatchRepository.claim_lines``: a lease per line), twice as many as it may run so that a
line that ends starts the next at once, runs up to ``batch_concurrency`` per batch and
``batch_max_inflight`` per process, each as a call through the one pipeline
(``Surface.run``), in-process, with a request id of its own that is the same on every run
of the line; the call carries the batch's id, so it is priced at the batch multiplier and
logged with the batch. A line's charge is committed (``LogWriter.commit_submitted``)
before its answer is recorded; recording it needs the line's lease, so a line is answered
once. A process that dies leaves its lines claimed: their leases run out and another
process (or the same one, restarted) runs them again. The upstream call may then be made a
second time; the ledger still charges the line's request id once.

A refusal of the key's own rate limits, or a call that found every channel's breaker open
(no attempt made), makes the line wait and try again; any other failure is the line's
answer, in the error file (the key's quota running out answers ``insufficient_quota``).

A batch with no open line is finished by the one process that wins its lease: the answered
lines are written, in the input's order, to an output file and an error file. A batch past
its completion window expires (its open lines answer ``batch_expired``); a cancelled batch
runs no new lines and ends once its running ones are answered. Stopping gives this
process's line leases back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from omnirelay.gateway.background import stop
from omnirelay.gateway.batches import answers, model
from omnirelay.gateway.calls import Call
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.operation import Reply
from omnirelay.gateway.surface import Surface
from omnirelay.gateway.tasks.poller import process_owner
from omnirelay.store.batches import (
    ERROR,
    OUTPUT,
    BatchRepository,
    BatchRow,
    LineEnd,
    LineRow,
)
from omnirelay.store.blobs import BlobStore
from omnirelay.store.files import FileRepository, FileRow
from omnirelay.wire.errors import GatewayError, RateLimited, UpstreamUnavailable

log = logging.getLogger("omnirelay.batches")

PAGE = 1000
SWEEP_EVERY_S = 60.0
BACKLOG = 4
"""Lines whose answers wait to be recorded, at most, as a multiple of the running ones."""
KEY_GRACE_MS = 30_000
"""How long a process waits to learn a batch's key before its lines fail without it."""
MAX_WAIT_S = 30.0
"""The longest a line waits on a rate limit or open breakers before it tries again."""


@dataclass(frozen=True, slots=True)
class BatchLimits:
    concurrency: int = 8
    max_inflight: int = 32
    lease_s: float = 120.0
    poll_s: float = 0.5
    file_retention_days: int = 30

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    def file_expiry(self, now_ms: int) -> int | None:
        days = self.file_retention_days
        return None if days <= 0 else now_ms + days * 86_400_000


class BatchRunner:
    def __init__(
        self,
        *,
        batches: BatchRepository,
        files: FileRepository,
        blobs: BlobStore,
        surface: Surface,
        keys: KeyCache,
        logs: LogWriter,
        limits: BatchLimits,
    ) -> None:
        self._batches = batches
        self._files = files
        self._blobs = blobs
        self._surface = surface
        self._keys = keys
        self._logs = logs
        self.limits = limits
        self.owner = process_owner()
        self._running: dict[int, set[asyncio.Task[None]]] = {}
        """Per batch, this process's lines whose call runs (what the limits count)."""
        self._queued: dict[int, deque[tuple[BatchRow, LineRow]]] = {}
        """Per batch, lines this process claimed ahead and has not started yet."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Every line task, until its answer is recorded."""
        self._inflight = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sink = _Sink(batches, self.owner)
        self._refill_at = max(1, limits.concurrency // 4)
        self._swept = 0.0
        self._renewed = time.monotonic()

    @property
    def inflight(self) -> int:
        return self._inflight

    def wake(self) -> None:
        """Look for work now (a batch was created or cancelled)."""
        self._wake.set()

    def start(self) -> None:
        self._sink.start()
        self._task = asyncio.create_task(self._run(), name="omnirelay-batches")

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop claiming lines, let running ones end for up to ``grace_s``, cancel the rest,
        and give their leases back: another process runs them."""
        await stop(self._task)
        self._task = None
        self._queued.clear()  # claimed ahead, never started: given back below
        running = list(self._tasks)
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._sink.close()
        try:
            released = await self._batches.release_lines(self.owner)
        except Exception:
            log.exception("giving back batch line leases failed; they run out on their own")
            return
        if released:
            log.info("gave back %d batch lines", released)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch runner tick failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.limits.poll_s)
            self._wake.clear()

    async def tick(self) -> None:
        now = time.time()
        now_ms = int(now * 1000)
        if time.monotonic() - self._renewed >= self.limits.lease_s / 3:
            self._renewed = time.monotonic()
            await self._batches.renew_leases(self.owner, now_ms, self.limits.lease_ms)
        for batch in await self._batches.in_statuses(model.RUNNING):
            await self._step(batch, now_ms)
        if now - self._swept >= SWEEP_EVERY_S:
            self._swept = now
            await self._sweep_files(now_ms)

    async def _step(self, batch: BatchRow, now_ms: int) -> None:
        if batch.status != model.IN_PROGRESS and batch.id in self._queued:
            # Cancelled: the lines claimed ahead are given back, never started.
            queued = self._queued.pop(batch.id)
            numbers = [line.line for _, line in queued]
            await self._batches.release_lines(self.owner, batch.id, numbers)
        if batch.status == model.IN_PROGRESS and now_ms >= batch.expires_ms:
            self._queued.pop(batch.id, None)
            await self._expire(batch, now_ms)
            return
        # A batch made on another process moments ago may be of a key this one has not
        # read yet: its lines wait for it here rather than fail (a key gone for good fails
        # them, once the grace is over).
        waits_for_key = (
            self._keys.get(batch.key_id) is None and now_ms - batch.created_ms < KEY_GRACE_MS
        )
        if batch.status == model.IN_PROGRESS and not waits_for_key:
            self._start_queued(batch.id)
            local = len(self._running.get(batch.id, ()))
            queue = self._queued.setdefault(batch.id, deque())
            # As many lines as may run now, and as many again claimed ahead, so that a
            # line's end starts the next at once, without a round trip to the database.
            wanted = min(
                2 * self.limits.concurrency - local - len(queue),
                # Answers waiting for the database are bounded too.
                BACKLOG * self.limits.max_inflight - len(self._tasks) - len(queue),
            )
            if wanted > 0:
                request_id = functools.partial(model.line_request_id, batch.public_id)
                lines = await self._batches.claim_lines(
                    batch.id, self.owner, now_ms, self.limits.lease_ms, wanted, request_id
                )
                queue.extend((batch, line) for line in lines)
                self._start_queued(batch.id)
            if not queue:
                del self._queued[batch.id]
        if batch.id in self._queued or batch.id in self._running:
            return
        counts = await self._batches.counts(batch.id, now_ms)
        if batch.status == model.CANCELLING:
            if counts.claimed == 0:
                await self._finalize(batch, model.CANCELLED, now_ms)
        elif counts.open == 0:
            await self._finalize(batch, model.COMPLETED, now_ms)

    def _launch(self, batch: BatchRow, line: LineRow) -> None:
        self._inflight += 1
        task = asyncio.create_task(self._line(batch, line), name="omnirelay-batch-line")
        self._running.setdefault(batch.id, set()).add(task)
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._free(batch.id, finished)

        task.add_done_callback(done)

    def _free(self, batch_id: int, task: asyncio.Task[None] | None) -> None:
        """The line's call is over: its room goes to the next line (its answer may still
        be on its way to the database; it keeps its lease until then)."""
        tasks = self._running.get(batch_id)
        if task is None or tasks is None or task not in tasks:
            return
        self._inflight -= 1
        tasks.discard(task)
        if not tasks:
            del self._running[batch_id]
        self._start_queued(batch_id)
        # Claim again once a quarter of the lines claimed ahead have started (or the batch
        # has nothing running here): one claim per slice of lines, not one per line.
        left = len(self._queued.get(batch_id, ()))
        if left <= self.limits.concurrency - self._refill_at or not tasks:
            self._wake.set()

    def _start_queued(self, batch_id: int) -> None:
        """Start lines claimed ahead while the batch's and the process's room allow."""
        queue = self._queued.get(batch_id)
        while (
            queue
            and len(self._running.get(batch_id, ())) < self.limits.concurrency
            and self._inflight < self.limits.max_inflight
        ):
            batch, line = queue.popleft()
            self._launch(batch, line)

    async def _line(self, batch: BatchRow, line: LineRow) -> None:
        run = _Run(line.tries)
        try:
            end = await self._answer(batch, line, run)
            self._free(batch.id, asyncio.current_task())
            # The charge is durable before the answer: a crash between the two runs the
            # line again under the same request id, which the ledger does not charge twice.
            await self._logs.commit_submitted()
            await self._sink.add(end)
        except asyncio.CancelledError:
            if not run.called:
                # The cancelled call is logged (free) under its request id: the line's
                # next run needs another, or its charge would be taken for a repeat.
                with contextlib.suppress(Exception):
                    await self._batches.note_try(line, self.owner, run.tries + 1)
            raise
        except Exception:
            log.exception("batch %s line %d failed; it runs again", batch.public_id, line.line)
            with contextlib.suppress(Exception):
                if not run.called:
                    await self._batches.note_try(line, self.owner, run.tries + 1)
                # Given back, not kept under a lease this process renews for ever.
                await self._batches.release_lines(self.owner, batch.id, [line.line])

    async def _answer(self, batch: BatchRow, line: LineRow, run: _Run) -> LineEnd:
        operation = model.ENDPOINTS[batch.endpoint]
        while True:
            run.called = False
            request_id = model.line_request_id(batch.public_id, line.line, run.tries)
            key = self._keys.get(batch.key_id)
            if key is None:
                message = "The batch's API key no longer exists."
                return answers.error(line, request_id, "key_not_found", message)
            call = Call.begin(request_id, key, operation)
            call.batch_id = batch.public_id
            try:
                reply = await self._surface.run(call, orjson.loads(line.body))
            except GatewayError as error:
                if _waits(error, call):
                    run.tries += 1
                    await self._batches.note_try(line, self.owner, run.tries)
                    await asyncio.sleep(min(error.retry_after or 1.0, MAX_WAIT_S))
                    continue
                return answers.failed(line, request_id, error)
            finally:
                run.called = True
            if not isinstance(reply, Reply):
                await reply.rest.aclose()
                streamed = GatewayError("The operation answered with a stream.")
                return answers.failed(line, request_id, streamed)
            return answers.output(line, request_id, reply.body)

    async def _expire(self, batch: BatchRow, now_ms: int) -> None:
        message = "This request was not run before the batch's completion window ended."

        def result_of(number: int, custom_id: str) -> str:
            request_id = model.line_request_id(batch.public_id, number)
            error = {"code": "batch_expired", "message": message}
            return answers.dump(request_id, custom_id, None, error)

        await self._batches.close_open_lines(batch.id, result_of)
        for task in self._running.get(batch.id, set()):
            task.cancel()
        await self._finalize(batch, model.EXPIRED, now_ms)

    async def _finalize(self, batch: BatchRow, status: str, now_ms: int) -> None:
        """Write the batch's output and error files and end it, if this process wins it."""
        values: dict[str, Any] = {}
        if status == model.COMPLETED and batch.status == model.IN_PROGRESS:
            values = {"status": model.FINALIZING, "finalizing_ms": now_ms}
        claimed = await self._batches.claim_batch(
            batch, self.owner, now_ms, self.limits.lease_ms, values
        )
        if claimed is None:
            return
        counts = await self._batches.counts(batch.id, now_ms)
        made = int(time.time() * 1000)
        new_files: list[FileRow] = []
        ids: dict[str, str | None] = {OUTPUT: None, ERROR: None}
        for outcome, suffix in ((OUTPUT, "output"), (ERROR, "error")):
            wanted = counts.completed if outcome == OUTPUT else counts.failed
            if not wanted:
                continue
            blob = await self._blobs.put(self._file_lines(batch.id, outcome), 1 << 62)
            file = FileRow(
                id=model.new_file_id(),
                key_id=batch.key_id,
                purpose=model.OUTPUT_PURPOSE,
                filename=f"{batch.public_id}_{suffix}.jsonl",
                bytes=blob.size,
                digest=blob.digest,
                lines=wanted,
                created_ms=made,
                expires_ms=self.limits.file_expiry(made),
            )
            new_files.append(file)
            ids[outcome] = file.id
        usage = await self._batches.usage(batch.id)
        ended = await self._batches.end_batch(
            claimed,
            self.owner,
            {
                "status": status,
                f"{status}_ms": made,
                "output_file_id": ids[OUTPUT],
                "error_file_id": ids[ERROR],
                "completed": counts.completed,
                "failed": counts.failed,
                "usage": model.usage_view(*usage),
            },
            new_files,
        )
        if ended:
            log.info(
                "batch %s %s: %d answered, %d failed",
                batch.public_id,
                status,
                counts.completed,
                counts.failed,
            )

    async def _file_lines(self, batch_id: int, outcome: str) -> AsyncIterator[bytes]:
        after = -1
        while True:
            page = await self._batches.done_lines(batch_id, after, PAGE)
            if not page:
                return
            after = page[-1][0]
            chunk = [result.encode() + b"\n" for _line, kind, result in page if kind == outcome]
            if chunk:
                yield b"".join(chunk)

    async def _sweep_files(self, now_ms: int) -> None:
        for file in await self._files.expired(now_ms):
            if await self._files.delete(file):
                self._blobs.delete(file.digest)


def _waits(error: GatewayError, call: Call) -> bool:
    """The key's own rate limit, or every channel's breaker open (no attempt was made):
    the line waits, it does not fail."""
    if isinstance(error, RateLimited):
        return True
    return isinstance(error, UpstreamUnavailable) and not call.attempts


@dataclass(slots=True)
class _Run:
    """Where a line's run is: its tries so far, and whether its current call returned."""

    tries: int
    called: bool = False


class _Sink:
    """Records answered lines in groups: one transaction for all that finished meanwhile."""

    def __init__(self, batches: BatchRepository, owner: str) -> None:
        self._batches = batches
        self._owner = owner
        self._queue: list[tuple[LineEnd, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-batch-sink")

    async def add(self, end: LineEnd) -> None:
        """Return once the line's answer is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((end, done))
        self._ready.set()
        await done

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await self._write()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self._write()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording batch lines failed; will retry")
                await asyncio.sleep(1.0)
                self._ready.set()

    async def _write(self) -> None:
        taken, self._queue = self._queue, []
        if not taken:
            return
        try:
            await self._batches.finish_lines(self._owner, [end for end, _ in taken])
        except BaseException:
            self._queue[:0] = taken
            raise
        for _end, done in taken:
            if not done.done():
                done.set_result(None)
