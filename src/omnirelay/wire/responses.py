"""The OpenAI Responses API as a client dialect: its request, its items, its ``response``.

A request is checked for what routing, metering and state rely on (:func:`check_request`).
Its ``input`` becomes items in their stored form (:func:`input_items`: ids, statuses and
content parts filled in, as ``GET /v1/responses/{id}/input_items`` lists them), which go
upstream either as Responses input again (:func:`as_input`, for a channel that serves the
Responses API) or as the canonical chat body (``wire.responses_chat``, for every other
channel). Every ``response`` starts from the request's echo (:func:`response_object`) and
reports usage in the Responses API's terms (:func:`responses_usage`, :func:`chat_usage`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField

MAX_MODEL_NAME = 128
MAX_ITEM_ID = 128
OBJECT = "response"
REFERENCE = "item_reference"
MESSAGE = "message"
FUNCTION_CALL = "function_call"
FUNCTION_OUTPUT = "function_call_output"
REASONING = "reasoning"
INPUT_ROLES = ("user", "system", "developer")
STOP_STATUS = {"length": "max_output_tokens", "content_filter": "content_filter"}
ID_PREFIXES = {
    MESSAGE: "msg_",
    FUNCTION_CALL: "fc_",
    FUNCTION_OUTPUT: "fco_",
    REASONING: "rs_",
}


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def item_id(kind: str) -> str:
    return new_id(ID_PREFIXES.get(kind, "item_"))


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """What the gateway itself needs of a ``POST /v1/responses`` body."""

    model: str
    stream: bool
    store: bool
    max_output: int | None
    previous_response_id: str | None
    background: bool = False

    @property
    def output_cap(self) -> int | None:
        return self.max_output


def check_request(body: dict[str, Any]) -> ResponsesRequest:
    model = body.get("model")
    if model is None:
        raise MissingField("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(
            f"'model' must be a model name of 1 to {MAX_MODEL_NAME} characters.",
            param="model",
            code="invalid_value",
        )
    background = body.get("background")
    if background is not None and not isinstance(background, bool):
        raise InvalidType("'background' must be a boolean.", param="background")
    if background is True and body.get("store") is False:
        raise InvalidRequest(
            "Background responses must be stored: send 'store': true (the default) with "
            "'background': true.",
            param="store",
            code="invalid_value",
        )
    if background is True and body.get("stream") is True:
        raise InvalidRequest(
            "Streaming a background response is not available on this gateway: create it "
            "without 'stream' and fetch it with GET /v1/responses/{id} until it ends.",
            param="stream",
            code="unsupported_parameter",
        )
    if body.get("conversation") is not None:
        raise InvalidRequest(
            "The Conversations API is not served by this gateway; continue a conversation "
            "with 'previous_response_id' instead.",
            param="conversation",
            code="unsupported_parameter",
        )
    given = body.get("input")
    if given is not None and not isinstance(given, str | list):
        raise InvalidType("'input' must be a string or an array of items.", param="input")
    if isinstance(given, list):
        for index, item in enumerate(given):
            if not isinstance(item, dict):
                raise InvalidType(f"'input[{index}]' must be an object.", param=f"input[{index}]")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidType("'instructions' must be a string.", param="instructions")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise InvalidType(
            "'previous_response_id' must be a response id.", param="previous_response_id"
        )
    if given is None and previous is None:
        raise MissingField("Missing required parameter: 'input'.", param="input")
    cap = body.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise InvalidType(
            "'max_output_tokens' must be a positive integer.", param="max_output_tokens"
        )
    for name, kind, described in (
        ("stream", bool, "a boolean"),
        ("store", bool, "a boolean"),
        ("tools", list, "an array"),
        ("text", dict, "an object"),
        ("reasoning", dict, "an object"),
        ("metadata", dict, "an object"),
    ):
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            raise InvalidType(f"'{name}' must be {described}.", param=name)
    for index, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidType(
                f"'tools[{index}]' must be an object with a 'type'.", param=f"tools[{index}]"
            )
    return ResponsesRequest(
        model=model,
        stream=body.get("stream") is True,
        store=body.get("store") is not False,
        max_output=cap,
        previous_response_id=previous,
        background=background is True,
    )


# -- items ---------------------------------------------------------------------------------


def references(given: Any) -> list[str]:
    """The ids of the ``item_reference`` items in ``input``."""
    if not isinstance(given, list):
        return []
    return [str(item.get("id")) for item in given if _is_reference(item)]


def _is_reference(item: Any) -> bool:
    return isinstance(item, dict) and (
        item.get("type") == REFERENCE
        or (item.get("type") is None and "id" in item and "role" not in item)
    )


def resolve(given: Any, stored: dict[str, dict[str, Any]]) -> Any:
    """``input`` with each ``item_reference`` replaced by the stored item it names."""
    if not isinstance(given, list) or not any(_is_reference(item) for item in given):
        return given
    resolved: list[Any] = []
    for index, item in enumerate(given):
        if not _is_reference(item):
            resolved.append(item)
            continue
        found = stored.get(str(item.get("id")))
        if found is None:
            raise InvalidRequest(
                f"Item with id '{item.get('id')}' not found.",
                param=f"input[{index}]",
                code="invalid_value",
            )
        resolved.append(as_input(found))
    return resolved


def input_items(given: Any) -> list[dict[str, Any]]:
    """``input`` (a string or items, references resolved) as stored items, with ids."""
    if given is None:
        return []
    if isinstance(given, str):
        return [_message("user", given, 0)]
    return [_item(item, index) for index, item in enumerate(given)]


def _item(item: dict[str, Any], index: int) -> dict[str, Any]:
    kind = item.get("type")
    if kind in (None, MESSAGE):
        role = item.get("role")
        if role not in (*INPUT_ROLES, "assistant"):
            raise InvalidRequest(
                f"Invalid value for 'input[{index}].role': expected one of 'user', 'system', "
                "'developer' or 'assistant'.",
                param=f"input[{index}].role",
                code="invalid_value",
            )
        stored = _message(str(role), item.get("content"), index)
        if isinstance(item.get("id"), str):
            stored["id"] = item["id"]
        if isinstance(item.get("phase"), str):
            stored["phase"] = item["phase"]
        return stored
    stored = {key: value for key, value in item.items()}
    if kind == FUNCTION_CALL:
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise MissingField(
                    f"Missing required parameter: 'input[{index}].{name}'.",
                    param=f"input[{index}].{name}",
                )
    elif kind == FUNCTION_OUTPUT:
        if not isinstance(item.get("call_id"), str):
            raise MissingField(
                f"Missing required parameter: 'input[{index}].call_id'.",
                param=f"input[{index}].call_id",
            )
        if not isinstance(item.get("output"), str | list):
            raise MissingField(
                f"Missing required parameter: 'input[{index}].output'.",
                param=f"input[{index}].output",
            )
    if not isinstance(stored.get("id"), str) or not stored["id"]:
        stored["id"] = item_id(str(kind))
    if kind in (FUNCTION_CALL, FUNCTION_OUTPUT) and not isinstance(stored.get("status"), str):
        stored["status"] = "completed"
    return stored


def _message(role: str, content: Any, index: int) -> dict[str, Any]:
    where = f"input[{index}].content"
    if isinstance(content, str):
        parts: list[Any] = [{"type": "input_text", "text": content}]
    elif isinstance(content, list):
        parts = content
    else:
        raise InvalidType(f"'{where}' must be a string or an array of parts.", param=where)
    if role == "assistant":
        return {
            "id": item_id(MESSAGE),
            "type": MESSAGE,
            "role": role,
            "status": "completed",
            "content": [_output_part(part, f"{where}[{n}]") for n, part in enumerate(parts)],
        }
    return {
        "id": item_id(MESSAGE),
        "type": MESSAGE,
        "role": role,
        "status": "completed",
        "content": [_input_part(part, f"{where}[{n}]") for n, part in enumerate(parts)],
    }


def _input_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "input_text" and isinstance(part, dict):
        return {"type": kind, "text": str(part.get("text") or "")}
    if kind == "input_image" and isinstance(part, dict):
        return {**part, "detail": part.get("detail") or "auto"}
    if kind == "input_file" and isinstance(part, dict):
        return dict(part)
    raise InvalidRequest(
        f"Invalid value for '{where}.type': expected 'input_text', 'input_image' or 'input_file'.",
        param=f"{where}.type",
        code="invalid_value",
    )


def _output_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("output_text", "input_text") and isinstance(part, dict):
        return output_text(str(part.get("text") or ""))
    if kind == "refusal" and isinstance(part, dict):
        return {"type": "refusal", "refusal": str(part.get("refusal") or "")}
    raise InvalidRequest(
        f"Invalid value for '{where}.type': supported values are 'output_text' and 'refusal'.",
        param=f"{where}.type",
        code="invalid_value",
    )


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def as_input(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item as a Responses input item that any Responses upstream takes: without
    the gateway's ids and statuses, an assistant message as plain text."""
    kind = item.get("type")
    if kind == MESSAGE and item.get("role") == "assistant":
        return {"type": MESSAGE, "role": "assistant", "content": message_text(item)}
    if kind == MESSAGE:
        return {"type": MESSAGE, "role": item.get("role"), "content": item.get("content")}
    if kind in (FUNCTION_CALL, FUNCTION_OUTPUT):
        return {key: value for key, value in item.items() if key not in ("id", "status")}
    return item


def message_text(item: dict[str, Any]) -> str:
    """The text of a message item's content parts."""
    texts: list[str] = []
    for part in item.get("content") or ():
        if not isinstance(part, dict):
            continue
        for name in ("text", "refusal"):
            if isinstance(part.get(name), str):
                texts.append(part[name])
    return "".join(texts)


def stored_item_id(item: dict[str, Any]) -> str | None:
    """An item's id, when it is one the store can index."""
    found = item.get("id")
    return found if isinstance(found, str) and 0 < len(found) <= MAX_ITEM_ID else None


def prompt_text(body: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """The text of a request's instructions, items and tools, for counting prompt tokens."""
    parts: list[str] = []
    if isinstance(body.get("instructions"), str):
        parts.append(body["instructions"])
    for item in items:
        kind = item.get("type")
        if kind == MESSAGE:
            parts.append(message_text(item))
        elif kind == FUNCTION_CALL:
            parts.extend((str(item.get("name") or ""), str(item.get("arguments") or "")))
        elif kind == FUNCTION_OUTPUT:
            parts.append(output_of(item.get("output")))
    tools = body.get("tools")
    if tools:
        parts.append(orjson.dumps(tools).decode())
    return "\n".join(parts)


def output_of(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "".join(
        part["text"]
        for part in output or ()
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


# -- the response object -------------------------------------------------------------------


def response_object(
    body: dict[str, Any], request: ResponsesRequest, response_id: str, created_at: int
) -> dict[str, Any]:
    """A ``response`` in progress, echoing the request's settings as OpenAI does."""
    reasoning, text = obj(body.get("reasoning")), obj(body.get("text"))
    parallel = body.get("parallel_tool_calls")
    response: dict[str, Any] = {
        "id": response_id,
        "object": OBJECT,
        "created_at": created_at,
        "status": "in_progress",
        "background": request.background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": request.max_output,
        "max_tool_calls": body.get("max_tool_calls"),
        "model": request.model,
        "output": [],
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": body.get("service_tier") or "default",
        "store": request.store,
        "temperature": _number(body.get("temperature"), 1.0),
        "text": {"format": text.get("format") or {"type": "text"}, **_verbosity(text)},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [_echo_tool(tool) for tool in body.get("tools") or ()],
        "top_p": _number(body.get("top_p"), 1.0),
        "truncation": body.get("truncation") or "disabled",
        "metadata": body.get("metadata") or {},
    }
    if isinstance(body.get("user"), str):  # the spec has no null for it: absent when unset
        response["user"] = body["user"]
    return response


def _number(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def _verbosity(text: dict[str, Any]) -> dict[str, Any]:
    return {"verbosity": text["verbosity"]} if isinstance(text.get("verbosity"), str) else {}


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        return tool
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def finished(response: dict[str, Any], stop: str | None, usage: dict[str, Any] | None) -> None:
    """Close ``response`` in place: its status from the chat ``finish_reason``, its usage."""
    reason = STOP_STATUS.get(stop or "")
    if reason is None:
        response["status"] = "completed"
        response["completed_at"] = int(time.time())
    else:
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": reason}
    if usage is not None:  # the spec has no null for it: absent until it is known
        response["usage"] = usage


def message_item(identity: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": identity,
        "type": MESSAGE,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(
    identity: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "id": identity,
        "type": FUNCTION_CALL,
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def reasoning_item(identity: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if text else []
    return {"id": identity, "type": REASONING, "summary": [], "content": content, "status": status}


def output_item_text(item: dict[str, Any]) -> str:
    """What the model generated in one output item, for counting tokens."""
    kind = item.get("type")
    if kind == MESSAGE:
        return message_text(item)
    if kind == FUNCTION_CALL:
        return str(item.get("name") or "") + str(item.get("arguments") or "")
    if kind == REASONING:
        parts = [*(item.get("summary") or ()), *(item.get("content") or ())]
        return "".join(p["text"] for p in parts if isinstance(p, dict) and "text" in p)
    return ""


# -- usage ---------------------------------------------------------------------------------


def responses_usage(chat: Any) -> dict[str, Any] | None:
    """An OpenAI chat ``usage`` object as the Responses API's."""
    if not isinstance(chat, dict):
        return None
    prompt = chat.get("prompt_tokens_details")
    completion = chat.get("completion_tokens_details")
    prompt = prompt if isinstance(prompt, dict) else {}
    completion = completion if isinstance(completion, dict) else {}
    input_tokens = _int(chat.get("prompt_tokens"))
    output_tokens = _int(chat.get("completion_tokens"))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _int(prompt.get("cached_tokens")),
            "cache_write_tokens": _int(prompt.get("cache_write_tokens")),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": _int(completion.get("reasoning_tokens"))},
        "total_tokens": input_tokens + output_tokens,
    }


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """A Responses ``usage`` object in the chat shape that metering reads; the counts are
    carried as they came, for the plausibility checks to judge."""
    if not isinstance(usage, dict):
        return None
    out: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
    }
    if "total_tokens" in usage:
        out["total_tokens"] = usage["total_tokens"]
    details = usage.get("input_tokens_details")
    if isinstance(details, dict):
        out["prompt_tokens_details"] = details
    details = usage.get("output_tokens_details")
    if isinstance(details, dict):
        out["completion_tokens_details"] = details
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
