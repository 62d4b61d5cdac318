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
    """The canonical body; a field of the wrong type is a 400 naming it, as Anthropic's is."""
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
    tools = _typed(body.get("tools"), list, "tools", "a valid list")
    if tools:
        out["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
        _tool_choice(body.get("tool_choice"), out)
    if _typed(body.get("stream"), bool, "stream", "a valid boolean"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _typed(value: Any, kind: type | tuple[type, ...], where: str, described: str) -> Any:
    """``value`` when it is absent (None) or of ``kind``; else a 400 naming ``where``."""
    if value is None or (isinstance(value, kind) and not _is_bool_for_number(value, kind)):
        return value
    raise InvalidRequest(f"{where}: Input should be {described}", param=where)


def _is_bool_for_number(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return isinstance(value, bool) and bool not in kinds


def _copy_options(body: dict[str, Any], out: dict[str, Any]) -> None:
    stops = _typed(body.get("stop_sequences"), list, "stop_sequences", "a valid list")
    for index, stop in enumerate(stops or ()):
        _typed(stop, str, f"stop_sequences.{index}", "a valid string")
    if stops:
        out["stop"] = stops
    for name in ("temperature", "top_p"):
        value = _typed(body.get(name), (int, float), name, "a valid number")
        if value is not None:
            out[name] = value
    metadata = _typed(body.get("metadata"), dict, "metadata", "a valid dictionary") or {}
    user = _typed(metadata.get("user_id"), str, "metadata.user_id", "a valid string")
    if user is not None:
        out["user"] = user
    config = _typed(body.get("output_config"), dict, "output_config", "a valid dictionary")
    where = "output_config.format"
    output_format = _typed((config or {}).get("format"), dict, where, "a valid dictionary")
    if output_format is not None and output_format.get("type") == "json_schema":
        schema = _typed(output_format.get("schema"), dict, f"{where}.schema", "a valid dictionary")
        format_schema = {"name": "output", "schema": schema or {}}
        out["response_format"] = {"type": "json_schema", "json_schema": format_schema}


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
    texts: list[str] = []
    for position, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "text":
            text = _text(block, f"{where}.{position}")
            if text:
                texts.append(text)
    return texts


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.text: Input should be a valid string", param=where)
    return text


def _message(message: Any, index: int) -> list[dict[str, Any]]:
    where = f"messages.{index}"
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where}: Input should be a valid dictionary", param=where)
    role, content = message.get("role"), message.get("content")
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
        kind = _block_type(block, block_where)
        if kind == "tool_result":
            result, images = _tool_result(block, block_where)
            results.append(result)
            parts.extend(images)
        else:
            part = _part(block, kind, block_where)
            if part is not None:
                parts.append(part)
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _block_type(block: Any, where: str) -> Any:
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: Input should be a valid dictionary", param=where)
    return block.get("type")


def _part(block: dict[str, Any], kind: Any, where: str) -> dict[str, Any] | None:
    if kind == "text":
        return {"type": "text", "text": _text(block, where)}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block, where)}}
    if kind == "document":
        source = block.get("source")
        data = source.get("data") if isinstance(source, dict) else None
        if (
            isinstance(source, dict)
            and source.get("type") == "base64"
            and source.get("media_type") == "application/pdf"
            and isinstance(data, str)
        ):
            file = {"file_data": data_url("application/pdf", data)}
            return {"type": "file", "file": {**file, "filename": "document.pdf"}}
        raise InvalidRequest(
            f"{where}.source: only base64 PDF documents are supported", param=where
        )
    if kind in ("thinking", "redacted_thinking"):
        return None
    raise InvalidRequest(f"{where}.type: '{kind}' blocks cannot be relayed", param=where)


def _source_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media_type, data = source.get("media_type"), source.get("data")
        if isinstance(media_type, str) and isinstance(data, str):
            return data_url(media_type, data)
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
    if _typed(block.get("is_error"), bool, f"{where}.is_error", "a valid boolean"):
        text = "Error: " + text
    call_id = _typed(block.get("tool_use_id"), str, f"{where}.tool_use_id", "a valid string")
    message = {"role": "tool", "tool_call_id": call_id or "", "content": text}
    return message, images


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a string or a list", param=where)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for position, block in enumerate(content):
        block_where = f"{where}.content.{position}"
        kind = _block_type(block, block_where)
        if kind == "text":
            texts.append(_text(block, block_where))
        elif kind == "tool_use":
            calls.append(_tool_use(block, block_where))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_use(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _typed(block.get("id"), str, f"{where}.id", "a valid string")
    name = _typed(block.get("name"), str, f"{where}.name", "a valid string")
    arguments = _typed(block.get("input"), dict, f"{where}.input", "a valid dictionary")
    function = {"name": name, "arguments": json.dumps(arguments or {}, separators=(",", ":"))}
    return {"id": call_id, "type": "function", "function": function}


def _tool(tool: Any, index: int) -> dict[str, Any]:
    where = f"tools.{index}"
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where}: Input should be a valid dictionary", param=where)
    if tool.get("type") not in (None, "custom"):
        raise InvalidRequest(
            f"{where}: server tool '{tool.get('type')}' cannot be relayed", param=where
        )
    name = _typed(tool.get("name"), str, f"{where}.name", "a valid string")
    schema = _typed(tool.get("input_schema"), dict, f"{where}.input_schema", "a valid dictionary")
    description = _typed(tool.get("description"), str, f"{where}.description", "a valid string")
    function: dict[str, Any] = {
        "name": name,
        "parameters": schema or {"type": "object", "properties": {}},
    }
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if _typed(choice, dict, "tool_choice", "a valid dictionary") is None:
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise InvalidRequest(
                "tool_choice.name: Input should be a valid string", param="tool_choice"
            )
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise InvalidRequest(
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            param="tool_choice",
        )
    where = "tool_choice.disable_parallel_tool_use"
    if _typed(choice.get("disable_parallel_tool_use"), bool, where, "a valid boolean"):
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
