"""Anthropic's Messages API (``POST /v1/messages``), spoken from the canonical OpenAI body.

System messages move to the top-level ``system``; tool calls and tool results become
``tool_use`` and ``tool_result`` blocks; images become ``image`` blocks (base64 or URL);
``max_tokens``, which Anthropic requires, gets a default when the client sent none.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from omnirelay.providers.anthropic_stream import AnthropicStream
from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import UpstreamFailure, error_for, error_object, text
from omnirelay.wire import anthropic as wire
from omnirelay.wire.chat import content_texts
from omnirelay.wire.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamError,
)
from omnirelay.wire.media import IMAGE_TYPES, is_remote, parse_data_url

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
CAPACITY_STATUSES = frozenset({429, 503, 529})
# Fields of Anthropic's own that a client may send through an OpenAI SDK's extra_body.
NATIVE_FIELDS = ("top_k", "thinking", "service_tier", "container", "output_config")
JSON_OBJECT_INSTRUCTION = "Respond with one JSON object and nothing else."


class AnthropicProvider:
    name = "anthropic"

    def chat_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        default_max = endpoint.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)
        payload = encode_request(body, upstream_model, stream, default_max)
        headers = {
            "x-api-key": endpoint.api_key,
            "anthropic-version": str(endpoint.options.get("anthropic_version", API_VERSION)),
            "content-type": "application/json",
            **endpoint.headers,
        }
        beta = endpoint.options.get("anthropic_beta")
        if beta:
            headers["anthropic-beta"] = str(beta)
        return UpstreamRequest(
            "POST", endpoint.base_url + "/messages", headers, orjson.dumps(payload)
        )

    def needs_inline_images(self, endpoint: Endpoint) -> bool:
        """Only when the channel says so (``inline_images``): this API fetches URLs itself."""
        return endpoint.options.get("inline_images") is True

    def chat_response(self, payload: bytes) -> dict[str, Any]:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream returned a response that is not JSON.") from exc
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise UpstreamError("The upstream returned a message without 'content'.")
        return decode_message(message)

    def stream_translator(self, model: str) -> AnthropicStream:
        return AnthropicStream(model, self.error)

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        error = error_object(payload)
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        failure = UpstreamFailure(
            status,
            text(error.get("message")),
            relayed={"type": "invalid_request_error", "param": None, "code": kind},
            no_balance=status == 402 or kind == "billing_error",
        )
        return error_for(failure, retry_after, CAPACITY_STATUSES)


# -- request -------------------------------------------------------------------------------


def encode_request(
    body: dict[str, Any], model: str, stream: bool, default_max_tokens: int
) -> dict[str, Any]:
    if (body.get("n") or 1) != 1:
        raise InvalidRequest("This model's channel returns one choice only; send n=1.", param="n")
    system, messages = encode_messages(body["messages"])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        _encode_response_format(response_format, system, out)
    if system:
        out["system"] = system
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    temperature = body.get("temperature")
    if isinstance(temperature, int | float):
        out["temperature"] = min(float(temperature), 1.0)  # Anthropic's range is 0..1
    if isinstance(body.get("top_p"), int | float):
        out["top_p"] = body["top_p"]
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    for name in NATIVE_FIELDS:
        if name in body:
            out[name] = body[name]
    tools = body.get("tools")
    if tools:
        out["tools"] = [encode_tool(tool, index) for index, tool in enumerate(tools)]
    choice = encode_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and tools:
        out["tool_choice"] = choice
    if stream:
        out["stream"] = True
    return out


def _encode_response_format(
    response_format: dict[str, Any], system: list[dict[str, Any]], out: dict[str, Any]
) -> None:
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object"}
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    elif kind == "json_object":
        # Anthropic has no schema-less JSON mode: ask for it in the system prompt.
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})


def encode_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend({"type": "text", "text": text} for text in content_texts(content) if text)
        elif role == "user":
            _append(out, "user", _user_blocks(content, index))
        elif role == "assistant":
            _append(out, "assistant", _assistant_blocks(message, index))
        elif role == "tool":
            result = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or "")}
            text = "".join(content_texts(content))
            if text:
                result["content"] = text
            _append(out, "user", [result])
        else:
            raise InvalidRequest(
                f"'messages[{index}].role' {role!r} cannot be sent to this model.",
                param=f"messages[{index}].role",
            )
    return system, out


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Anthropic wants turns to alternate: consecutive turns of one role are merged."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _user_blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), index))
        elif kind == "file":
            blocks.append(_document_block(part.get("file"), index))
        else:
            raise InvalidRequest(
                f"'messages[{index}].content' has a {kind!r} part, which this model's "
                "channel cannot take.",
                param=f"messages[{index}].content",
            )
    return blocks


def _image_block(image: Any, index: int) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    param = f"messages[{index}].content"
    if not isinstance(url, str):
        raise InvalidRequest("An 'image_url' part needs a 'url'.", param=param)
    inline = parse_data_url(url)
    if inline is not None:
        mime, data = inline
        if mime not in IMAGE_TYPES:
            raise InvalidRequest(
                f"Images must be one of {', '.join(sorted(IMAGE_TYPES))}, not {mime}.",
                param=param,
            )
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    if is_remote(url):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("An image URL must be http(s) or a base64 data: URL.", param=param)


def _document_block(file: Any, index: int) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    inline = parse_data_url(data) if isinstance(data, str) else None
    if inline is None or inline[0] != "application/pdf":
        raise InvalidRequest(
            "Only PDF files given inline as 'file_data' can be sent to this model.",
            param=f"messages[{index}].content",
        )
    source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
    return {"type": "document", "source": source}


def _assistant_blocks(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": text} for text in content_texts(message.get("content")) if text
    ]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        blocks.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "input": _arguments(function.get("arguments"), index),
            }
        )
    return blocks


def _arguments(arguments: Any, index: int) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise InvalidRequest(
            f"'messages[{index}].tool_calls' has arguments that are not a JSON object.",
            param=f"messages[{index}].tool_calls",
        ) from exc
    return parsed if isinstance(parsed, dict) else {}


def encode_tool(tool: Any, index: int) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise InvalidRequest(
            f"'tools[{index}]' must be a function tool for this model.", param=f"tools[{index}]"
        )
    schema = function.get("parameters")
    schema = dict(schema) if isinstance(schema, dict) and schema else {}
    schema.setdefault("type", "object")
    if schema["type"] == "object":
        schema.setdefault("properties", {})
    encoded: dict[str, Any] = {"name": function.get("name"), "input_schema": schema}
    if function.get("description"):
        encoded["description"] = function["description"]
    return encoded


def encode_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    encoded: dict[str, Any] | None
    if choice is None:
        encoded = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        encoded = {"type": "auto"}
    elif choice == "required":
        encoded = {"type": "any"}
    elif choice == "none":
        encoded = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        encoded = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest(
            "'tool_choice' is not one this model understands.", param="tool_choice"
        )
    if encoded is not None and parallel is False and encoded["type"] != "none":
        encoded["disable_parallel_tool_use"] = True
    return encoded


# -- response ------------------------------------------------------------------------------


def decode_message(message: dict[str, Any]) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        reply["tool_calls"] = calls
    if thinking:
        reply["reasoning_content"] = "".join(thinking)
    choice = {
        "index": 0,
        "message": reply,
        "logprobs": None,
        "finish_reason": wire.finish_reason(message.get("stop_reason")),
    }
    return {
        "id": message.get("id") or "msg_unknown",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [choice],
        "usage": wire.openai_usage(message.get("usage")),
    }
