"""One call's identity and outcome, from authentication to its log row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from omnirelay.gateway.keys import KeyState
from omnirelay.wire.usage import Usage

STATUS_CLIENT_CLOSED = 499
MODEL_COLUMN_CHARS = 128


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

    def log_row(
        self,
        *,
        status: int,
        stream: bool,
        usage: Usage | None = None,
        cost_nano: int = 0,
        error: str | None = None,
    ) -> dict[str, Any]:
        source = None if usage is None else "counted" if usage.counted_locally else "upstream"
        usage = usage or Usage()
        return {
            "request_id": self.request_id,
            "created_ms": self.started_ms,
            "key_id": self.key.id,
            "endpoint": self.endpoint,
            "model": _clip(self.model),
            "served_model": _clip(self.served_model),
            "channel_id": self.channel_id,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "cost_nano": cost_nano,
            "latency_ms": self.elapsed_ms(),
            "ttfb_ms": self.ttfb_ms,
            "status": status,
            "stream": stream,
            "usage_source": source,
            "error": error,
            "attempts": list(self.attempts) or None,
        }


def _clip(name: str | None) -> str | None:
    """Model names as the log's column holds them; an upstream may report a longer one."""
    return name[:MODEL_COLUMN_CHARS] if name else name
