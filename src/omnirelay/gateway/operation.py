"""What an operation plugs into the pipeline, and what one attempt of it hands back.

An :class:`Operation` says what its call may cost on a channel (the hold) and how one
attempt goes. An attempt ends in a :class:`Charged` answer (complete, with its cost), a
:class:`Streaming` one, whose :class:`StreamSource` yields the client's bytes and meters
them as they pass, or a :class:`Deferred` one: accepted upstream as a task, whose cost is
known only when the task ends. The pipeline (``gateway.pipeline``) does everything else.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from omnirelay.gateway.calls import Call
from omnirelay.gateway.pricing import Quote
from omnirelay.gateway.routing import Route
from omnirelay.wire.errors import GatewayError
from omnirelay.wire.usage import Usage

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer for the client."""

    body: bytes
    content_type: str = JSON


@dataclass(frozen=True, slots=True)
class StreamReply:
    """An answer relayed as it arrives; ``rest`` must be closed after use."""

    content_type: str
    first: bytes
    rest: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class Charged:
    """One attempt's complete answer and what it costs."""

    reply: Reply
    cost: int
    usage: Usage = field(default_factory=Usage)
    served_model: str | None = None


class StreamSource(Protocol):
    """One attempt's stream: the client's bytes, metered as they are produced.

    Iterating yields chunks of whole events (or raw bytes) for the client. A failure of the
    upstream, or a cut the source decides (output past its cap, money past its limit), is a
    :class:`GatewayError` raised from the iteration; the pipeline then sends
    :meth:`failure_tail` and settles :meth:`charge`.
    """

    content_type: str

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @property
    def finished(self) -> bool:
        """True once the chunk that ends the stream for the client has been produced."""
        ...

    def cost_so_far(self) -> int:
        """What the stream has cost until now: cheap, counting only what is new."""
        ...

    def charge(self) -> tuple[int, Usage]:
        """What the stream cost, once it has ended however it ended."""
        ...

    def failure_tail(self, error: GatewayError) -> bytes:
        """What to send the client when the stream breaks (may be empty)."""
        ...

    def close(self) -> None:
        """Drop the upstream connection (a no-op once it was read to its end)."""
        ...


@dataclass(slots=True)
class Streaming:
    """One attempt's stream, whose first chunk has arrived (None: the stream is empty)."""

    source: StreamSource
    first: bytes | None
    rest: AsyncIterator[bytes]
    ends_at: float = float("inf")
    """When (``time.monotonic``) the stream has used its channel's total time."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """One attempt accepted upstream as a task: the client gets its answer now, and the
    call's hold stays with the task until the task ends and is settled."""

    reply: Reply
    task_id: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt of a call is given: where it goes, and its price there."""

    call: Call
    route: Route
    quote: Quote
    spend_limit: int | None
    """The most the call may cost, its hold plus the key's remaining budget; None: no limit."""
    hold_nano: int = 0
    """What admission held for the call (the dearest quote)."""


@dataclass(frozen=True, slots=True)
class Operation:
    model: str
    hold: Callable[[Quote], int]
    """An upper bound of the call's cost at a quote; ModelNotPriced when it cannot be priced."""
    attempt: Callable[[Attempt], Awaitable[Charged | Streaming | Deferred]]
    stream: bool = False
    channel_id: int | None = None
    """Only this channel may serve the call (a task's follow-up goes where the task is)."""
