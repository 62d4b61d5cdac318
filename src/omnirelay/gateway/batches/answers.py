"""A line's answer: how a call's outcome becomes a line of the output or error file, in
OpenAI's shape ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}``, with the tokens the batch's ``usage`` adds up."""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.store.batches import ERROR, OUTPUT, LineEnd, LineRow
from omnirelay.wire.errors import GatewayError


def dump(request_id: str, custom_id: str, response: dict[str, Any] | None, error: Any) -> str:
    """One line of an output or error file, in OpenAI's shape."""
    return orjson.dumps(
        {"id": request_id, "custom_id": custom_id, "response": response, "error": error}
    ).decode()


def _line_json(line: LineRow, request_id: str, response: dict[str, Any] | None, error: Any) -> str:
    return dump(request_id, line.custom_id, response, error)


def output(line: LineRow, request_id: str, body: bytes) -> LineEnd:
    """A call answered: the output file's line, and the tokens its usage reports."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = body.decode("utf-8", "replace")
    response = {"status_code": 200, "request_id": request_id, "body": payload}
    usage = payload.get("usage") if isinstance(payload, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    input_tokens = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
    output_tokens = _int(usage.get("completion_tokens", usage.get("output_tokens")))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return LineEnd(
        line.batch_id,
        line.line,
        OUTPUT,
        _line_json(line, request_id, response, None),
        input_tokens,
        output_tokens,
        cached,
    )


def failed(line: LineRow, request_id: str, error: GatewayError) -> LineEnd:
    """A call that failed: the error file's line, with the error's status and body."""
    response = {"status_code": error.status, "request_id": request_id, "body": error.body()}
    return LineEnd(line.batch_id, line.line, ERROR, _line_json(line, request_id, response, None))


def error(line: LineRow, request_id: str, code: str, message: str) -> LineEnd:
    """A line that made no call: the error file's line, with ``error`` and no response."""
    reason = {"code": code, "message": message}
    return LineEnd(line.batch_id, line.line, ERROR, _line_json(line, request_id, None, reason))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
