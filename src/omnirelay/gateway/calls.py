"""One call's identity and what happened to it on the way: channels tried, first byte."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from omnirelay.gateway.keys import KeyState


@dataclass(slots=True)
class Call:
    request_id: str
    key: KeyState
    endpoint: str
    started: float
    started_ms: int
    model: str | None = None
    served_model: str | None = None
    channel_id: int | None = None
    ttfb_ms: int | None = None
    body_bytes: int = 0
    client_ip: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    traceparent: str | None = None
    """The client's W3C trace context (``traceparent``, ``tracestate``), when it sent one."""
    tracestate: str | None = None
    trace: Any = None
    """The call's span, while tracing is on."""
    batch_id: str | None = None
    """The batch this call is a line of: priced with the model's batch multiplier, and
    logged with the batch's id."""

    @classmethod
    def begin(
        cls,
        request_id: str,
        key: KeyState,
        endpoint: str,
        *,
        body_bytes: int = 0,
        client_ip: str | None = None,
    ) -> Call:
        call = cls(request_id, key, endpoint, time.monotonic(), int(time.time() * 1000))
        call.body_bytes, call.client_ip = body_bytes, client_ip
        return call

    def note_attempt(self, channel_id: int, started: float, status: int, code: str | None) -> None:
        """One try on one channel, for the log row's chain of attempts."""
        self.attempts.append(
            {
                "channel_id": channel_id,
                "status": status,
                "code": code,
                "ms": int((time.monotonic() - started) * 1000),
            }
        )

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = self.elapsed_ms()

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)
