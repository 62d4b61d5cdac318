"""The Responses API to and from the canonical chat shape, for channels that speak only chat.

:func:`to_chat` makes the chat body of a request (its items as messages, function tools,
``tool_choice``, ``text.format`` as ``response_format``, ``max_output_tokens``,
``reasoning.effort``); what only OpenAI runs (built-in tools, stored prompts, files by id)
is a clear 400. :func:`from_chat` tells a chat answer as the ``response`` object.
"""

from __future__ import annotations

from typing import Any

from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.responses import (
    FUNCTION_CALL,
    FUNCTION_OUTPUT,
    MESSAGE,
    REASONING,
    finished,
    function_call_item,
    item_id,
    message_item,
    message_text,
    new_id,
    obj,
    output_of,
    output_text,
    reasoning_item,
    responses_usage,
)

# -- to the canonical chat body ------------------------------------------------------------


HOSTED_ONLY = "is run by OpenAI itself; this model's channel is not OpenAI's, so it cannot be used"


def to_chat(body: dict[str, Any], items: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The canonical chat body for a channel that does not serve the Responses API."""
    if body.get("prompt") is not None:
        raise InvalidRequest(f"'prompt' (a stored prompt) {HOSTED_ONLY}.", param="prompt")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    for index, item in enumerate(items):
        _add_message(messages, item, index)
    if not messages:
        raise InvalidRequest("'input' has nothing to send to the model.", param="input")
    out: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body.get("max_output_tokens"), int):
        out["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float) and not isinstance(body.get(name), bool):
            out[name] = body[name]
    if isinstance(body.get("user"), str):
        out["user"] = body["user"]
    effort = obj(body.get("reasoning")).get("effort")
    if isinstance(effort, str):
        out["reasoning_effort"] = effort
    _format(body.get("text"), out)
    _tools(body, out)
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _add_message(messages: list[dict[str, Any]], item: dict[str, Any], index: int) -> None:
    kind = item.get("type")
    if kind == MESSAGE:
        role = item.get("role")
        if role == "assistant":
            messages.append({"role": "assistant", "content": message_text(item) or None})
        elif role in ("system", "developer"):
            texts = [part.get("text") for part in item.get("content") or ()]
            text = "\n".join(t for t in texts if isinstance(t, str))
            messages.append({"role": "system", "content": text})
        else:
            messages.append({"role": "user", "content": _user_content(item, index)})
    elif kind == FUNCTION_CALL:
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments")},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == FUNCTION_OUTPUT:
        output = item.get("output")
        if isinstance(output, list) and any(
            isinstance(part, dict) and part.get("type") != "input_text" for part in output
        ):
            raise InvalidRequest(
                f"'input[{index}].output' holds parts other than text, which this model's "
                "channel cannot take as a tool result.",
                param=f"input[{index}].output",
            )
        messages.append(
            {"role": "tool", "tool_call_id": item.get("call_id"), "content": output_of(output)}
        )
    elif kind != REASONING:
        raise InvalidRequest(
            f"'input[{index}]' is a '{kind}' item, which {HOSTED_ONLY} here.",
            param=f"input[{index}]",
        )


def _user_content(item: dict[str, Any], index: int) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(item.get("content") or ()):
        where = f"input[{index}].content[{position}]"
        kind = part.get("type")
        if kind == "input_text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise InvalidRequest(
                    f"'{where}': an image by 'file_id' needs OpenAI's Files API; send its "
                    "'image_url' (a URL or a data: URL) on this model's channel.",
                    param=where,
                )
            image = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            if not isinstance(part.get("file_data"), str):
                raise InvalidRequest(
                    f"'{where}': only files sent inline ('file_data') can go to this model's "
                    "channel; a 'file_id' or 'file_url' needs OpenAI's own.",
                    param=where,
                )
            file = {"file_data": part["file_data"]}
            if isinstance(part.get("filename"), str):
                file["filename"] = part["filename"]
            parts.append({"type": "file", "file": file})
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _format(text: Any, out: dict[str, Any]) -> None:
    spec = text.get("format") if isinstance(text, dict) else None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "json_schema" and isinstance(spec, dict):
        schema: dict[str, Any] = {"name": spec.get("name") or "response"}
        for name in ("schema", "strict", "description"):
            if spec.get(name) is not None:
                schema[name] = spec[name]
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        out["response_format"] = {"type": "json_object"}


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"'tools[{index}]' is the built-in tool '{tool.get('type')}', which "
                f"{HOSTED_ONLY}. Use function tools on this model.",
                param=f"tools[{index}]",
                code="unsupported_tool",
            )
        function: dict[str, Any] = {"name": tool.get("name")}
        for name in ("description", "parameters", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        tools.append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or () if isinstance(t, dict)}
        tools = [tool for tool in tools if tool["function"]["name"] in allowed]
        choice = choice.get("mode") or "auto"
    if not tools:
        return
    out["tools"] = tools
    if isinstance(body.get("parallel_tool_calls"), bool):
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif isinstance(choice, dict):
        raise InvalidRequest(
            f"'tool_choice' names the built-in tool '{choice.get('type')}', which {HOSTED_ONLY}.",
            param="tool_choice",
            code="unsupported_tool",
        )


# -- from a chat answer ------------------------------------------------------------------


def from_chat(data: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """A complete chat answer as the ``response`` object started by :func:`response_object`."""
    choices = data.get("choices") or [{}]
    choice = obj(choices[0])
    message = obj(choice.get("message"))
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(item_id(REASONING), reasoning, "completed"))
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append(output_text(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append(message_item(item_id(MESSAGE), content, "completed"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            output.append(
                function_call_item(
                    item_id(FUNCTION_CALL),
                    str(call.get("id") or new_id("call_")),
                    str(function.get("name") or ""),
                    str(function.get("arguments") or ""),
                    "completed",
                )
            )
    response["output"] = output
    if isinstance(data.get("model"), str) and data["model"]:
        response["model"] = data["model"]
    finished(response, choice.get("finish_reason"), responses_usage(data.get("usage")))
    return response
