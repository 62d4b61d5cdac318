"""What a task dialect implements: one upstream task API, as data in and data out.

A dialect builds the requests of a task's life (submit, poll, find a task whose submit
got no answer, cancel, download its results) and reads the answers into the engine's
canonical terms (:class:`TaskStatus`). It says what a task costs in billable units
(:class:`Billable`; the gateway prices them from the catalogue) and how often to poll. It
sends nothing itself: the engine does, through the pooled client and the SSRF guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.operations import ErrorMapper
from omnirelay.wire.uploads import Upload

# What an upstream says of a task, in the engine's words.
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    state: str
    """QUEUED, RUNNING, SUCCEEDED or FAILED."""
    upstream_status: str
    """The upstream's own word for it, kept for the operator."""
    progress: int
    upstream_id: str | None = None
    error: Mapping[str, str] | None = None
    """``{"code", "message"}`` of a task that failed, in the upstream's words."""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """What the task makes, as the upstream reports it (a video's ``seconds``, ``size``)."""
    created_at: int | None = None
    """Unix seconds, when the upstream says (to match a task whose submit got no answer)."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Where the upstream serves the task's result files (``{name: url}``): read by
    ``assets`` to download them, never kept or shown (they expire, and may be signed)."""


@dataclass(frozen=True, slots=True)
class Billable:
    """What a task costs, in a catalogue unit: ``unit`` is ``video_seconds`` (``variant`` a
    size) or ``task_action`` (``variant`` an action name)."""

    unit: str
    variant: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Asset:
    """One result file to keep, and the request that downloads it; or, for a dialect that
    made the file itself (``LocalDialect``), the blob it stored already (``stored``:
    ``{"digest", "size", "content_type"}``)."""

    name: str
    request: UpstreamRequest | None
    required: bool = True
    stored: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """A submit as the engine hands it to a dialect."""

    action: str
    params: Mapping[str, Any]
    """The client's fields the upstream needs (secrets and gateway-only fields removed)."""
    upload: Upload | None = None
    source_upstream_id: str | None = None
    """The upstream id of the task this one works on (a remix's video)."""


class SubmitRefusal:
    """Marks an error a dialect raises from ``submit_response``: the upstream answered, and
    said no (a refused prompt, a full queue). Nothing was made, so the task fails (or the
    submit moves on to the next channel) instead of waiting to be found upstream."""


class TaskDialect(ErrorMapper, Protocol):
    max_batch: int
    """How many tasks one poll may ask about (1: one at a time)."""

    def submit_request(
        self, endpoint: Endpoint, submission: Submission, upstream_model: str
    ) -> UpstreamRequest: ...

    def submit_response(self, payload: bytes) -> TaskStatus:
        """The accepted task (UpstreamError when the answer is not one; a SubmitRefusal
        when it says the task was not accepted). Its ``outputs`` are what the accepting
        answer said, kept in the row's ``result`` as ``submitted`` until the task ends."""
        ...

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        """Ask about up to ``max_batch`` tasks."""
        ...

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """What the upstream says of each task it answered about."""
        ...

    def find_request(self, endpoint: Endpoint) -> UpstreamRequest | None:
        """The request that lists recent tasks, or None when the API has none."""
        ...

    def find_response(
        self, payload: bytes, submission: Submission, upstream_model: str, since_s: int
    ) -> list[TaskStatus]:
        """The listed tasks that may be this submission, made since ``since_s``, oldest
        first."""
        ...

    def cancel_request(self, endpoint: Endpoint, upstream_id: str) -> UpstreamRequest | None:
        """The request that cancels (or deletes) a task upstream; None when there is none."""
        ...

    def assets(self, endpoint: Endpoint, upstream_id: str, status: TaskStatus) -> list[Asset]:
        """The result files of a task that succeeded."""
        ...

    def hold_units(self, submission: Submission) -> Billable:
        """The most the task may cost."""
        ...

    def charge_units(self, submission: Submission, status: TaskStatus) -> Billable:
        """What the task that succeeded costs."""
        ...

    def next_poll_s(self, unchanged_polls: int, min_s: float, max_s: float) -> float:
        """How long to wait before the next poll, after ``unchanged_polls`` polls that
        brought no news."""
        ...


@runtime_checkable
class ReadsSubmission(Protocol):
    """Optional: a dialect whose accepted task needs the submission to be named (its
    poll path depends on the action, say): the engine calls this instead of
    ``submit_response``."""

    def submit_response_to(self, payload: bytes, submission: Submission) -> TaskStatus: ...


@runtime_checkable
class LocalDialect(Protocol):
    """Optional: a dialect with no upstream, whose work the gateway does itself (the
    embedded PDF parser). ``run`` does the task during its submit and returns it ended
    (SUCCEEDED, its results stored, named in ``outputs``) or raises the GatewayError to
    answer (a client error fails the task, releasing its hold); ``status_of`` reads that
    end back from the outputs the task's row keeps, where a poll would ask an upstream."""

    async def run(self, submission: Submission, upstream_model: str) -> TaskStatus: ...

    def status_of(self, upstream_id: str, outputs: Mapping[str, Any]) -> TaskStatus: ...
