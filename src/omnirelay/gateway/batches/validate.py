"""Reading a batch's input file the way OpenAI validates one.

Each line must be a JSON object with a unique ``custom_id``, ``method`` POST, ``url``
equal to the batch's endpoint, and an object ``body`` that neither streams nor asks for a
background response, and names a model the key may use. Every failing line is reported
with its (1-based) number, as OpenAI's ``errors.data[{code, line, message, param}]``; a
batch with any is ``failed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from omnirelay.gateway.embeddings import DEFAULT_MODERATION_MODEL, MODERATIONS
from omnirelay.gateway.keys import KeyState

YIELD_EVERY = 500
MAX_ERRORS = 1000
"""The most errors one failed batch reports (OpenAI's file may have 50,000 lines)."""


@dataclass
class Parsed:
    lines: list[dict[str, Any]] = field(default_factory=list)
    """``{line, custom_id, model, body}`` of each line, in order (0-based ``line``)."""
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, number: int, code: str, message: str, param: str | None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "line": number, "message": message, "param": param})


async def split_lines(chunks: AsyncIterable[bytes]) -> AsyncIterable[bytes]:
    """The file's lines, without their line ends."""
    rest = b""
    async for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line.rstrip(b"\r")
    if rest.strip():
        yield rest.rstrip(b"\r")


async def parse_input(
    chunks: AsyncIterable[bytes], url: str, operation: str, key: KeyState
) -> Parsed:
    """Every request line of the file at ``chunks`` for a batch of ``url``, or the errors."""
    parsed = Parsed()
    seen: set[str] = set()
    number = 0
    async for raw in split_lines(chunks):
        number += 1
        if number % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a 50,000-line file must not hold the loop for long
        if not raw.strip():
            continue  # blank lines (a trailing one) carry no request
        line = _line(parsed, number, raw, url, operation, key, seen)
        if line is not None:
            parsed.lines.append({**line, "line": len(parsed.lines)})
    if number == 0 or (not parsed.lines and not parsed.errors):
        parsed.fail(1, "empty_file", "The input file has no request lines.", None)
    return parsed


def _line(
    parsed: Parsed,
    number: int,
    raw: bytes,
    url: str,
    operation: str,
    key: KeyState,
    seen: set[str],
) -> dict[str, Any] | None:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed.fail(number, "invalid_json_line", "This line is not valid JSON.", None)
        return None
    if not isinstance(item, dict):
        parsed.fail(number, "invalid_json_line", "This line is not a JSON object.", None)
        return None
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        parsed.fail(
            number,
            "missing_required_parameter",
            "Each line needs a 'custom_id' string.",
            "custom_id",
        )
        return None
    if custom_id in seen:
        parsed.fail(
            number,
            "duplicate_custom_id",
            f"The custom_id '{custom_id[:100]}' is used by an earlier line; each must be unique.",
            "custom_id",
        )
        return None
    seen.add(custom_id)
    if item.get("method") != "POST":
        parsed.fail(number, "invalid_method", "The 'method' of each line must be 'POST'.", "method")
        return None
    if item.get("url") != url:
        parsed.fail(
            number,
            "invalid_url",
            f"The 'url' of each line must be the batch's endpoint, '{url}'.",
            "url",
        )
        return None
    body = item.get("body")
    if not isinstance(body, dict):
        parsed.fail(number, "invalid_request", "The 'body' of each line must be an object.", "body")
        return None
    if body.get("stream") is True:
        parsed.fail(
            number, "invalid_request", "A batch line may not stream: drop 'stream'.", "body.stream"
        )
        return None
    if body.get("background") is True:
        parsed.fail(
            number,
            "invalid_request",
            "A batch line runs in the batch already: drop 'background'.",
            "body.background",
        )
        return None
    model = body.get("model")
    if model is None and operation == MODERATIONS:
        model = DEFAULT_MODERATION_MODEL
    if not isinstance(model, str) or not model:
        parsed.fail(
            number,
            "missing_required_parameter",
            "The 'body' of each line needs a 'model' string.",
            "body.model",
        )
        return None
    if not key.allows(model):
        parsed.fail(
            number,
            "model_not_allowed",
            f"This API key may not use the model '{model[:128]}'.",
            "body.model",
        )
        return None
    return {"custom_id": custom_id, "model": model[:128], "body": orjson.dumps(body).decode()}
