"""The Anthropic Messages API, inbound: its request as the canonical OpenAI body, and the
canonical response as its ``message``.

``tool_result`` blocks become ``tool`` messages, ``tool_use`` blocks become ``tool_calls``,
images and PDFs become ``image_url`` and ``file`` parts. A stream asks for usage so that the
last events can report it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from omnirelay.wire import anthropic as shared
from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.media import data_url


def to_openai(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (an integer >= 1)", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    converted = _system(body.get("system"))
    for index, message in enumerate(messages):
        converted.extend(_message(message, index))
    out["messages"] = converted
    _copy_options(body, out)
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
        _tool_choice(body.get("tool_choice"), out)
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _copy_options(body: dict[str, Any], out: dict[str, Any]) -> None:
    stops = body.get("stop_sequences")
    if stops:
        out["stop"] = stops
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    output_format = (body.get("output_config") or {}).get("format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        schema = {"name": "output", "schema": output_format.get("schema") or {}}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}


def _system(system: Any) -> list[dict[str, Any]]:
    texts = _texts(system, "system")
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def _texts(content: Any, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: Input should be a string or a list", param=where)
    return [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and block.get("text")
    ]


def _message(message: Any, index: int) -> list[dict[str, Any]]:
    where = f"messages.{index}"
    role = message.get("role") if isinstance(message, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if role == "system":
        return _system(content)
    if role == "assistant":
        return [_assistant(content, where)]
    if role != "user":
        raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'", param=where)
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a string or a list", param=where)
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for position, block in enumerate(content):
        block_where = f"{where}.content.{position}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            result, images = _tool_result(block, block_where)
            results.append(result)
            parts.extend(images)
        else:
            part = _part(block, block_where)
            if part is not None:
                parts.append(part)
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _part(block: Any, where: str) -> dict[str, Any] | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(block.get("text") or "")}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block, where)}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
            file = {"file_data": data_url("application/pdf", source.get("data", ""))}
            return {"type": "file", "file": {**file, "filename": "document.pdf"}}
        raise InvalidRequest(f"{where}.source: only base64 PDF documents are supported")
    if kind in ("thinking", "redacted_thinking"):
        return None
    raise InvalidRequest(f"{where}.type: '{kind}' blocks cannot be relayed", param=where)


def _source_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        return data_url(str(source.get("media_type")), str(source.get("data") or ""))
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return str(source["url"])
    raise InvalidRequest(f"{where}.source: expected a base64 or url source", param=where)


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[Any]]:
    """A ``tool`` message, and any images the result carried (for a user turn after it)."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        for position, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image":
                url = _source_url(part, f"{where}.content.{position}")
                images.append({"type": "image_url", "image_url": {"url": url}})
    text = "\n".join(_texts(content, f"{where}.content"))
    if block.get("is_error"):
        text = "Error: " + text
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""), "content": text}
    return message, images


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: Any, index: int) -> dict[str, Any]:
    where = f"tools.{index}"
    if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequest(f"{where}: server tool '{kind}' cannot be relayed", param=where)
    function: dict[str, Any] = {
        "name": tool.get("name"),
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


# -- response ------------------------------------------------------------------------------


def message_id(openai_id: Any) -> str:
    if isinstance(openai_id, str) and openai_id.startswith("msg_"):
        return openai_id
    return "msg_" + secrets.token_hex(12)


def tool_input(arguments: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_message(data: dict[str, Any], model: str) -> dict[str, Any]:
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reply = shared.obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    for field in ("content", "refusal"):
        text = reply.get(field)
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": tool_input(function.get("arguments")),
                }
            )
    return {
        "id": message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": data.get("model") or model,
        "content": content,
        "stop_reason": shared.stop_reason(
            choice.get("finish_reason"),
            used_tools=any(block["type"] == "tool_use" for block in content),
        ),
        "stop_sequence": None,
        "usage": shared.anthropic_usage(data.get("usage")),
    }
