"""One mapping from an upstream's error answer to the gateway's error, for every dialect.

A dialect reads its own error body into an :class:`UpstreamFailure` (the message, what to
relay for a client error, and whether the answer says the account cannot pay or the key
is wrong); this module decides the class and status. The client sees the message cleaned
(no secrets, addresses, paths or tracebacks, and short); the log row keeps it fuller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from omnirelay.wire.errors import (
    GatewayError,
    UpstreamClientError,
    UpstreamError,
    UpstreamRejectedCredentials,
    UpstreamTimeout,
    UpstreamUnavailable,
    clean,
    for_log,
)

CLIENT_ERROR_STATUSES = frozenset({400, 404, 413, 422})
TIMEOUT_STATUSES = frozenset({408, 504})
CREDENTIAL_STATUSES = frozenset({401, 403})
CAPACITY_STATUSES = frozenset({429, 529})


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """What a dialect read from an error answer."""

    status: int
    message: str
    relayed: dict[str, Any] = field(default_factory=dict)
    """``type``, ``param`` and ``code`` to relay with a client error."""
    no_balance: bool = False
    bad_credentials: bool = False


def error_for(
    failure: UpstreamFailure,
    retry_after: float | None,
    capacity: frozenset[int] = CAPACITY_STATUSES,
) -> GatewayError:
    status = failure.status
    said = clean(failure.message) or f"HTTP {status}"
    detail = for_log(failure.message) or None
    if failure.bad_credentials:
        return UpstreamRejectedCredentials(
            f"The upstream refused the gateway's credentials: {said}", detail=detail
        )
    if status in CLIENT_ERROR_STATUSES:
        return UpstreamClientError(status, said, error=failure.relayed, detail=detail)
    if status in TIMEOUT_STATUSES:
        return UpstreamTimeout(f"The upstream timed out: {said}", detail=detail)
    if failure.no_balance:
        return UpstreamRejectedCredentials(
            f"The upstream account has no balance: {said}", detail=detail
        )
    if status in capacity:
        return UpstreamUnavailable(
            f"The upstream is over capacity: {said}", retry_after=retry_after, detail=detail
        )
    if status in CREDENTIAL_STATUSES:
        return UpstreamRejectedCredentials(
            f"The upstream refused the gateway's credentials: {said}", detail=detail
        )
    return UpstreamError(f"The upstream failed with HTTP {status}: {said}", detail=detail)


def error_object(payload: bytes) -> dict[str, Any]:
    """The ``error`` object of an answer in OpenAI's shape or one close to it.

    Also reads ``{"error": "text"}``, ``{"message": ...}`` and bodies that are not JSON
    (their first bytes become the message).
    """
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {"message": payload[:500].decode(errors="replace").strip()}
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # Gemini's streamGenerateContent without alt=sse
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return {"message": body["message"]}
    return {}


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""
