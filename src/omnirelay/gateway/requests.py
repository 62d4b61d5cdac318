"""Checks on inbound request bodies: just what routing and metering rely on.

The rest of a body is the upstream's to judge, and passes through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from omnirelay.wire.errors import InvalidJSON, InvalidRequest, InvalidType, MissingField

MAX_MODEL_NAME = 128
WRITABLE_DEPTH = 254
"""The deepest JSON orjson writes (it reads 1,024 levels)."""
TRANSLATION_HEADROOM = 16
"""Levels a translation to another dialect may add around a client's value."""
MAX_NESTING = WRITABLE_DEPTH - TRANSLATION_HEADROOM


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw or raw.isspace():  # isspace scans; strip would copy the whole body
        raise InvalidJSON("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise InvalidType("The request body must be a JSON object.")
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING:
        _check_nesting(body)
    return body


def _check_nesting(body: dict[str, Any]) -> None:
    """A body the gateway could not send on, even translated, is refused here. Only bodies
    with enough brackets to be that deep are checked, so an ordinary body costs a count."""
    wrapped: Any = body
    for _ in range(TRANSLATION_HEADROOM):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)  # fails past WRITABLE_DEPTH: the body is past MAX_NESTING
    except orjson.JSONEncodeError as exc:
        raise InvalidJSON(
            f"The request body nests arrays and objects more than {MAX_NESTING} levels deep."
        ) from exc


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    stream: bool
    client_wants_usage: bool
    max_output: int | None = None
    """``max_completion_tokens``, else ``max_tokens``: the output cap of each choice."""
    choices: int = 1

    @property
    def output_cap(self) -> int | None:
        """``max_tokens`` x ``n``, when the request set a cap."""
        return None if self.max_output is None else self.max_output * self.choices


def check_chat_request(body: dict[str, Any]) -> ChatRequest:
    model = _required(body, "model", str, "a string")
    if not model or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(
            f"'model' must be a model name of 1 to {MAX_MODEL_NAME} characters.",
            param="model",
            code="invalid_value",
        )
    messages = _required(body, "messages", list, "an array")
    if not messages:
        raise InvalidType("'messages' must contain at least one message.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidType(f"'messages[{index}]' must be an object.", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str):
            error = MissingField if role is None else InvalidType
            raise error(
                f"'messages[{index}].role' is required and must be a string.",
                param=f"messages[{index}].role",
            )
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            where = f"messages[{index}].tool_calls"
            raise InvalidType(f"'{where}' must be an array, not {_json_type(calls)}.", param=where)
    stream = _optional(body, "stream", bool, "a boolean", default=False)
    options = _optional(body, "stream_options", dict, "an object", default=None)
    wants_usage = bool(options and options.get("include_usage") is True)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidType(f"'{name}' must be an integer.", param=name)
    tools = _optional(body, "tools", list, "an array", default=None)
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise InvalidType(f"'tools[{index}]' must be an object.", param=f"tools[{index}]")
    _check_translated(body)
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    choices = body.get("n")
    return ChatRequest(
        model=model,
        stream=stream,
        client_wants_usage=wants_usage,
        max_output=cap if cap and cap > 0 else None,
        choices=choices if choices and choices > 1 else 1,
    )


def _check_translated(body: dict[str, Any]) -> None:
    """Fields that other dialects' translations read (Anthropic's, Gemini's)."""
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str | list):
        raise InvalidType(
            f"'stop' must be a string or an array, not {_json_type(stop)}.", param="stop"
        )
    response_format = _optional(body, "response_format", dict, "an object", default=None)
    schema = (response_format or {}).get("json_schema")
    if schema is not None and not isinstance(schema, dict):
        where = "response_format.json_schema"
        raise InvalidType(f"'{where}' must be an object, not {_json_type(schema)}.", param=where)


def _required(body: dict[str, Any], name: str, kind: type, described: str) -> Any:
    if name not in body or body[name] is None:
        raise MissingField(f"'{name}' is a required property.", param=name)
    return _typed(body, name, kind, described)


def _optional(body: dict[str, Any], name: str, kind: type, described: str, default: Any) -> Any:
    if body.get(name) is None:
        return default
    return _typed(body, name, kind, described)


def _typed(body: dict[str, Any], name: str, kind: type, described: str) -> Any:
    value = body[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidType(f"'{name}' must be {described}, not {_json_type(value)}.", param=name)
    return value


def _json_type(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
