"""One exception hierarchy, rendered at the edge as OpenAI's error JSON.

Each error carries its HTTP status, OpenAI ``type`` and ``code``, and a message that tells
the caller what to do. Messages never contain secrets or internal addresses.
"""

from __future__ import annotations

import re
from typing import Any

INVALID_REQUEST = "invalid_request_error"


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.detail = detail
        """A fuller account for the operator's log row (an upstream's own words, secrets
        redacted); the client sees only ``message``."""

    @property
    def logged(self) -> str:
        return self.detail or self.message

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = INVALID_REQUEST
    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class MissingField(InvalidRequest):
    code = "missing_field"


class InvalidType(InvalidRequest):
    code = "invalid_type"


class RequestTooLarge(GatewayError):
    status = 413
    type = INVALID_REQUEST
    code = "request_too_large"


class InvalidAPIKey(GatewayError):
    status = 401
    type = INVALID_REQUEST
    code = "invalid_api_key"


class KeyExpired(InvalidAPIKey):
    code = "key_expired"


class KeyDisabled(InvalidAPIKey):
    code = "key_disabled"


class PermissionDenied(GatewayError):
    status = 403
    type = INVALID_REQUEST
    code = "permission_denied"


class ModelNotAllowed(PermissionDenied):
    code = "model_not_allowed"


class ModelNotPriced(PermissionDenied):
    code = "model_not_priced"


class NotFound(GatewayError):
    status = 404
    type = INVALID_REQUEST
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(GatewayError):
    status = 409
    type = INVALID_REQUEST
    code = "conflict"


class InsufficientQuota(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class MeteringUnavailable(GatewayError):
    """The shared counters cannot be reached, so no call can be admitted safely."""

    status = 503
    type = "server_error"
    code = "metering_unavailable"


class RateLimited(GatewayError):
    """A key's own requests, tokens or concurrency per minute ran out; not its money."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """Anything the upstream did that is the gateway's problem, not the client's."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    disables_channel = False
    """True when the channel cannot work until an operator acts (bad key, no balance)."""


class UpstreamRejectedCredentials(UpstreamError):
    disables_channel = True


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamClientError(GatewayError):
    """The upstream's 400, 404, 413 or 422: the client's problem, relayed as it came."""

    type = INVALID_REQUEST

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.status = status
        self.upstream_error = error or {}

    def body(self) -> dict[str, Any]:
        error = {
            "message": self.message,
            "type": self.upstream_error.get("type") or self.type,
            "param": self.upstream_error.get("param"),
            "code": self.upstream_error.get("code"),
        }
        return {"error": error}


_SECRET_PATTERNS = (
    re.compile(r"https?://[^\s'\"]+"),
    re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"),
    re.compile(r"\[[0-9a-fA-F]*:[0-9a-fA-F:]*\](?::\d+)?"),
    re.compile(r"(?i)bearer\s+[^\s'\"]+"),
    re.compile(r"\b(?:sk|pk|rk|key)[-_][-_A-Za-z0-9*.]{6,}|\bAIza[-_A-Za-z0-9]{20,}"),
    re.compile(r"\b[A-Za-z0-9_\-]{32,}\b"),
)


def redact(message: str) -> str:
    """Strip what may be a secret or an internal address from an upstream's message."""
    for pattern in _SECRET_PATTERNS:
        message = pattern.sub("[redacted]", message)
    return message


MAX_CLIENT_MESSAGE = 400
MAX_LOGGED_MESSAGE = 2000
_TRACEBACK = "Traceback (most recent call last)"
_FRAME = re.compile(r'\s*File "[^"]*", line \d+[^\n]*(\n[^\n]*)?')
_PATH = re.compile(r"(?:[A-Za-z]:\\|~?/)(?:[\w.@+-]+[/\\])+[\w.@+-]*")
_TLDS = (
    "com|net|org|io|ai|dev|app|cloud|co|us|uk|de|cn|jp|info|biz|internal|local|localdomain|"
    "lan|intranet|corp|home|svc|cluster|consul|test|example|invalid|localhost"
)
_HOST = re.compile(
    rf"\b(?:[A-Za-z0-9-]+\.){{2,}}[A-Za-z]{{2,}}\b(?::\d+)?"
    rf"|\b[A-Za-z0-9-]+\.(?:{_TLDS})\b(?::\d+)?"
    r"|\blocalhost(?::\d+)?\b"
)


def clean(message: str) -> str:
    """An upstream's error message fit for the client: secrets, internal addresses, host
    names, file paths and tracebacks removed, white space folded, and shortened."""
    head, found, trace = message.partition(_TRACEBACK)
    if found:
        # A traceback's last line is the error itself; its frames are the upstream's code.
        lines = [line.strip() for line in trace.splitlines() if line.strip()]
        message = f"{head} {lines[-1] if lines else ''}"
    message = _FRAME.sub(" ", message)
    message = redact(message)
    message = _PATH.sub("[path]", message)
    message = _HOST.sub("[host]", message)
    return _shortened(" ".join(message.split()), MAX_CLIENT_MESSAGE)


def for_log(message: str) -> str:
    """An upstream's error message as the operator's log keeps it: whole but for secrets."""
    return _shortened(redact(message), MAX_LOGGED_MESSAGE)


def _shortened(message: str, limit: int) -> str:
    if len(message) <= limit:
        return message
    cut = message[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + "…"
