"""What the fakes of task upstreams share: :class:`TaskFake`, the fault knobs, the clock
and the jobs of every task fake (OpenAI's videos, Midjourney, Suno and the rest); and
:class:`JobFake`, a job's progress by polls or by a clock the test moves, and result files
that expire.

A subclass serves its vendor's wire format and calls :meth:`JobFake.new_job` (which
applies the submit knobs), :meth:`JobFake.poll_job` (which applies the poll knobs and
advances the job) and :meth:`JobFake.result_file` (which serves a finished job's file
until it expires). The knobs keep ``FakeVideos``'s names and meanings: ``refuse_submits``
(with ``refusal_status``), ``late_submits`` (``late_creates``, ``late_by_s``),
``fail_jobs``, ``never_finish``, ``flap``, ``poll_429``, ``poll_delay_s``,
``polls_to_finish``, ``finish_after_s``, ``content_ttl_s``; ``overlaps`` counts polls of one
job that overlapped.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web

from .fake_threaded import LoopbackServer

J = TypeVar("J")


class TaskFake(LoopbackServer, Generic[J]):
    """What every fake task upstream shares: its jobs, its clock, and the fault knobs.

    Knobs (``set``): ``refuse_submits`` (refuse the next n submits, with
    ``refusal_status``), ``late_submits`` (answer the next n submits ``late_by_s`` late;
    with ``late_creates`` off, without making the job), ``fail_jobs``, ``never_finish``,
    ``flap``, ``poll_429`` (the next n polls are 429s), ``poll_delay_s``,
    ``polls_to_finish`` or ``finish_after_s`` (by the fake's clock), ``content_ttl_s``
    (result URLs expire this long after a job ends). ``overlaps`` counts polls of one job
    answered at once, which a gateway must never cause.
    """

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._lock = threading.Lock()
        self.jobs: dict[str, J] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.jobs.clear()
            self.requests: list[tuple[str, str]] = []
            self.polls_to_finish = 3
            self.finish_after_s: float | None = None  # by the clock instead of by polls
            self.content_ttl_s = 3600
            self.refuse_submits = 0
            self.refusal_status = 400
            self.late_submits = 0
            self.late_creates = True
            self.late_by_s = 5.0
            self.fail_jobs = False
            self.never_finish = False
            self.flap = False
            self.poll_429 = 0
            self.poll_delay_s = 0.0
            self.overlaps = 0
            self.clock_offset = 0.0

    # -- the test's controls ---------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock: jobs progress by it, and result URLs expire by it."""
        with self._lock:
            self.clock_offset += seconds

    def set(self, **knobs: Any) -> None:
        with self._lock:
            for name, value in knobs.items():
                if not hasattr(self, name):
                    raise AttributeError(name)
                setattr(self, name, value)

    def job(self) -> J:
        """The one job the fake has (the test made one)."""
        with self._lock:
            (only,) = self.jobs.values()
        return only


@dataclass
class FakeJob:
    id: str
    kind: str
    params: dict[str, Any]
    created_at: float
    status: str = "queued"  # queued, running, succeeded, failed
    progress: int = 0
    polls: int = 0
    completed_at: float | None = None
    expires_at: float | None = None
    fail: bool = False
    never_finish: bool = False
    flap: bool = False
    finish_after_s: float | None = None
    polling: int = 0
    poll_times: list[tuple[float, int]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)


class Refused(Exception):
    """The submit knob said no: answer ``status`` in the vendor's error shape."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class RateLimited(Exception):
    """The poll knob said 429."""


class Late(Exception):
    """Answer this submit after ``delay_s`` (``job`` None: the job was never made)."""

    def __init__(self, job: FakeJob | None, delay_s: float) -> None:
        super().__init__("late")
        self.job = job
        self.delay_s = delay_s


class Answers:
    """What the middleware asks of the fake it serves."""

    def late_answer(self, job: FakeJob | None) -> web.StreamResponse:
        raise NotImplementedError


FAKE = web.AppKey("fake", Answers)


class JobFake(TaskFake[FakeJob], Answers):
    """A task fake whose jobs are :class:`FakeJob`: submit, poll and result files done
    once for PicWish, Tripo and Kling."""

    name = "fake-tasks"
    id_prefix = "job-"

    def __init__(self, api_key: str = "") -> None:
        super().__init__(api_key)

    # -- what subclasses call --------------------------------------------------------------

    def note(self, request: web.Request) -> None:
        with self._lock:
            self.requests.append((request.method, request.path_qs))

    def new_job(self, kind: str, params: dict[str, Any]) -> FakeJob:
        """A job, or Refused / Late as the submit knobs say."""
        with self._lock:
            if self.refuse_submits:
                self.refuse_submits -= 1
                raise Refused(self.refusal_status)
            late = self.late_submits > 0
            if late:
                self.late_submits -= 1
            job = FakeJob(
                id=self.id_prefix + secrets.token_hex(12),
                kind=kind,
                params=params,
                created_at=self.now(),
                fail=self.fail_jobs,
                never_finish=self.never_finish,
                flap=self.flap,
                finish_after_s=self.finish_after_s,
            )
            if late and not self.late_creates:
                raise Late(None, self.late_by_s)
            self.jobs[job.id] = job
            if late:
                raise Late(job, self.late_by_s)
        return job

    def find(self, job_id: str) -> FakeJob | None:
        with self._lock:
            return self.jobs.get(job_id)

    async def poll_job(self, job: FakeJob) -> None:
        """One poll of ``job``: RateLimited as the knob says, else the job advances."""
        with self._lock:
            if job.polling:
                self.overlaps += 1
            job.polling += 1
            limited = self.poll_429 > 0
            if limited:
                self.poll_429 -= 1
            job.poll_times.append((time.monotonic(), 429 if limited else 200))
        try:
            if self.poll_delay_s:
                await asyncio.sleep(self.poll_delay_s)
            if limited:
                raise RateLimited()
            with self._lock:
                job.polls += 1
                self._advance(job)
        finally:
            with self._lock:
                job.polling -= 1

    def result_file(self, job_id: str, name: str) -> bytes | None:
        """A finished job's file while it has not expired, else None."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.status != "succeeded" or name not in job.files:
                return None
            if job.expires_at is not None and self.now() > job.expires_at:
                return None
            job.reads[name] = job.reads.get(name, 0) + 1
            return job.files[name]

    def make_files(self, job: FakeJob) -> dict[str, bytes]:
        """The files a job makes when it succeeds (by name); subclasses say which."""
        return {}

    # -- the job's life --------------------------------------------------------------------

    def _advance(self, job: FakeJob) -> None:
        if job.status in ("succeeded", "failed"):
            return
        if job.flap:
            job.status = "running" if job.status == "queued" else "queued"
            job.progress = 10 if job.status == "running" else 5
            return
        if job.never_finish:
            job.status, job.progress = "running", min(job.progress + 1, 99)
            return
        if job.finish_after_s is not None:
            share = (self.now() - job.created_at) / job.finish_after_s
        else:
            share = job.polls / max(self.polls_to_finish, 1)
        if share < 1:
            job.progress = int(share * 100)
            job.status = "running" if job.progress > 0 else "queued"
            return
        job.completed_at = self.now()
        job.progress = 100
        if job.fail:
            job.status = "failed"
        else:
            job.status = "succeeded"
            job.expires_at = job.completed_at + self.content_ttl_s
            job.files = self.make_files(job)


def file_bytes(seed: str, head: bytes, size: int = 4096) -> bytes:
    """A result file: a format's first bytes, then bytes that differ from every other's."""
    digest = hashlib.sha256(seed.encode()).digest()
    return (head + digest * (size // len(digest) + 1))[:size]


@web.middleware
async def late_answers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answers a Late submit after its delay: the job's answer, or a 500 when none was
    made (the subclass's ``late_answer`` renders it)."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except Late as late:
        await asyncio.sleep(late.delay_s)
        return request.app[FAKE].late_answer(late.job)


PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
GLB_HEAD = b"glTF\x02\x00\x00\x00"
WEBP_HEAD = b"RIFF\x00\x00\x00\x00WEBPVP8 "
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
TXT_HEAD = b"recognised text\n"
