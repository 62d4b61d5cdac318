"""What Anthropic's Messages API refuses, checked the way api.anthropic.com checks it."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, get_type_hints

from anthropic.types.message_create_params import MessageCreateParamsBase

KNOWN_FIELDS = frozenset(get_type_hints(MessageCreateParamsBase)) | {
    "stream",
    "temperature",
    "top_p",
    "top_k",
}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
DEFAULT_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class AnthropicError(Exception):
    def __init__(
        self, status: int, message: str, kind: str | None = None, headers: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind or DEFAULT_ERRORS.get(status, ("api_error", ""))[0]
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        error = {"type": self.kind, "message": self.message}
        return {"type": "error", "error": error, "request_id": request_id}


def invalid(message: str) -> AnthropicError:
    return AnthropicError(400, message, "invalid_request_error")


def validate(body: dict[str, Any], served: Any) -> dict[str, Any]:
    for key in body:
        if key not in KNOWN_FIELDS:
            raise invalid(f"{key}: Extra inputs are not permitted")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise invalid(f"{name}: Field required")
    if not isinstance(body["model"], str):
        raise invalid("model: Input should be a valid string")
    if body["model"] not in served:
        raise AnthropicError(404, f"model: {body['model']}", "not_found_error")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 1
    ):
        raise invalid("temperature: Input should be less than or equal to 1")
    _check_system(body.get("system"))
    tools = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), tools)
    _check_messages(body["messages"])
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    return body


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list")
    for index, block in enumerate(system):
        if not (isinstance(block, dict) and block.get("type") == "text"):
            raise invalid(f"system.{index}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise invalid(f"system.{index}.text: text content blocks must be non-empty")


def _check_tools(tools: Any) -> dict[str, dict[str, Any]]:
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    found: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        for key in tool:
            if key not in (
                "name",
                "description",
                "input_schema",
                "cache_control",
                "type",
                "strict",
            ):
                raise invalid(f"{where}.custom.{key}: Extra inputs are not permitted")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise invalid(f"{where}.custom.name: String should match pattern '{TOOL_NAME.pattern}'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise invalid(f"{where}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise invalid(f"{where}.custom.input_schema.type: Input should be 'object'")
        if name in found:
            raise invalid("tools: Tool names must be unique.")
        found[name] = tool
    return found


def _check_tool_choice(choice: Any, tools: dict[str, dict[str, Any]]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid("tool_choice.type: Input tag does not match any of the expected tags")
    if not tools and kind != "none":
        raise invalid("tool_choice: tool_choice may only be specified while providing tools.")
    if kind == "tool" and choice.get("name") not in tools:
        raise invalid(f"tool_choice.name: Tool '{choice.get('name')}' not found in tools.")
    extra = set(choice) - {"type", "name", "disable_parallel_tool_use"}
    if extra:
        raise invalid(f"tool_choice.{kind}.{extra.pop()}: Extra inputs are not permitted")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: at least one message is required")
    pending: list[str] = []  # tool_use ids the next message must answer
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise invalid(f"{where}.content: Input should be a valid list")
        if not blocks and index < len(messages) - 1:
            raise invalid(f"{where}: all messages must have non-empty content")
        answered: list[str] = []
        for position, block in enumerate(blocks):
            result = _check_block(block, role, f"{where}.content.{position}")
            if result is not None:
                if result not in pending:
                    raise invalid(
                        f"{where}.content.{position}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {result}. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message."
                    )
                answered.append(result)
        missing = [tool_id for tool_id in pending if tool_id not in answered]
        if missing:
            raise invalid(
                f"{where}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
        pending = [b["id"] for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]


def _check_block(block: Any, role: str, where: str) -> str | None:
    """Check one content block; returns the tool_use_id of a tool_result block."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise invalid(f"{where}.text: text content blocks must be non-empty")
    elif kind == "image" and role == "user":
        _check_source(block.get("source"), IMAGE_TYPES, where)
    elif kind == "document" and role == "user":
        _check_source(block.get("source"), frozenset({"application/pdf"}), where)
    elif kind == "tool_use" and role == "assistant":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise invalid(f"{where}: tool_use blocks need 'id' and 'name'")
        if not isinstance(block.get("input"), dict):
            raise invalid(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result" and role == "user":
        content = block.get("content")
        if not isinstance(content, str | list | type(None)):
            raise invalid(f"{where}.content: Input should be a valid string or list")
        return str(block.get("tool_use_id"))
    elif kind in ("thinking", "redacted_thinking") and role == "assistant":
        pass
    else:
        raise invalid(f"{where}.type: '{kind}' blocks are not allowed in {role} messages")
    return None


def _check_source(source: Any, types: frozenset[str], where: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        if not str(source.get("url", "")).startswith(("http://", "https://")):
            raise invalid(f"{where}.source.url: URL must be http or https")
        return
    if kind != "base64":
        raise invalid(f"{where}.source.type: Input tag does not match any of the expected tags")
    assert isinstance(source, dict)
    if source.get("media_type") not in types:
        raise invalid(f"{where}.source.media_type: Input should be {' or '.join(sorted(types))}")
    try:
        base64.b64decode(str(source.get("data", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{where}.source.base64: invalid base64 data") from exc
