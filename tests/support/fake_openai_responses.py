"""The fake OpenAI upstream's Responses API (``POST /v1/responses``), as api.openai.com
serves it.

A request is checked as OpenAI checks it: unknown fields, then the official spec's
``CreateResponse`` schema, the model, and the ``previous_response_id`` and
``item_reference`` items it names, which must be responses and items this fake stored
(``store`` true, the default). The answer is decided like the chat fake's (``_plan``: an
echo of the last user text, forced function calls, JSON for a ``json_schema`` format), so
that a Responses call and the same call through Chat Completions report the same usage.
It is rendered as the documented ``response`` object or its event stream: ``response.created``,
``response.in_progress``, per output item ``output_item.added``, its parts and deltas,
their ``.done`` events and ``output_item.done``, then ``response.completed`` (or
``response.incomplete``), each event with its ``sequence_number``.
"""

from __future__ import annotations

import json
import math
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any

from .fake_openai import DATED_MODELS, _ApiError, _plan
from .openapi import leaf_error, openai_wording, property_names, schema_errors

_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


def _hex_id(prefix: str) -> str:
    return prefix + "".join(random.choices(_HEX, k=48))


@dataclass
class Stored:
    """What the fake keeps of a stored response: the object and its conversation's items."""

    response: dict[str, Any]
    items: list[dict[str, Any]]


@dataclass
class ResponsesState:
    responses: dict[str, Stored] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Planned:
    response: dict[str, Any]
    tokens: dict[int, list[str]]  # output index -> its text, token by token
    stream: bool


def plan_response(body: Any, parsed: bool, models: list[str], state: ResponsesState) -> Planned:
    """Check a ``POST /v1/responses`` body as OpenAI does and decide the whole answer."""
    if not parsed or not isinstance(body, dict):
        raise _ApiError(400, "We could not parse the JSON body of your request.")
    known = property_names("CreateResponse")
    for key in body:
        if key not in known:
            raise _ApiError(
                400,
                f"Unknown parameter: '{key}'.",
                param=key,
                code="unknown_parameter",
            )
    error = leaf_error(schema_errors("CreateResponse", _with_defaults(body)))
    if error is not None:
        message, param, code = openai_wording(error)
        raise _ApiError(400, message, param=param, code=code)
    model = body.get("model")
    if model not in models:
        raise _ApiError(
            400,
            f"The requested model '{model}' does not exist.",
            param="model",
            code="model_not_found",
        )
    history = _history(body, state)
    given = body.get("input")
    items = _resolved(given, state)
    conversation = history + items
    completion = _plan(_chat_body(body, conversation))
    choice = completion.choices[0]
    response = _response_object(body, model)
    tokens: dict[int, list[str]] = {}
    output: list[dict[str, Any]] = response["output"]
    if choice.content is not None:
        tokens[len(output)] = choice.tokens
        output.append(
            {
                "id": _hex_id("msg_"),
                "type": "message",
                "status": "completed",
                "content": [
                    {
                        "type": "output_text",
                        "annotations": [],
                        "logprobs": [],
                        "text": choice.content,
                    }
                ],
                "role": "assistant",
            }
        )
    for call in choice.tool_calls:
        output.append(
            {
                "id": _hex_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "arguments": call.arguments,
                "call_id": call.id,
                "name": call.name,
            }
        )
    if choice.finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        response["completed_at"] = int(time.time())
    response["usage"] = {
        "input_tokens": completion.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }
    if response["store"]:
        stored = [_with_id(item) for item in conversation]
        state.responses[response["id"]] = Stored(response, stored + output)
        for item in stored + output:
            state.items[item["id"]] = item
    return Planned(response, tokens, body.get("stream") is True)


def _with_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """The body with what OpenAI fills in itself: the spec marks a function tool's
    ``strict`` and ``parameters`` required, yet the API takes a tool without them (strict
    by default), as the Vercel AI SDK sends it."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return body
    filled = [
        {"strict": True, "parameters": None, **tool}
        if isinstance(tool, dict) and tool.get("type") == "function"
        else tool
        for tool in tools
    ]
    return {**body, "tools": filled}


def _history(body: dict[str, Any], state: ResponsesState) -> list[dict[str, Any]]:
    previous = body.get("previous_response_id")
    if previous is None:
        return []
    found = state.responses.get(previous)
    if found is None:
        raise _ApiError(
            400,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return list(found.items)


def _resolved(given: Any, state: ResponsesState) -> list[dict[str, Any]]:
    if given is None:
        return []
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    items: list[dict[str, Any]] = []
    for index, item in enumerate(given):
        if item.get("type") == "item_reference" or ("role" not in item and "type" not in item):
            found = state.items.get(item["id"])
            if found is None:
                raise _ApiError(
                    404,
                    f"Item with id '{item['id']}' not found.",
                    param=f"input[{index}]",
                )
            items.append(found)
        else:
            items.append(item)
    return items


def _with_id(item: dict[str, Any]) -> dict[str, Any]:
    if isinstance(item.get("id"), str):
        return item
    prefix = {"message": "msg_", "function_call": "fc_"}.get(item.get("type") or "message", "it_")
    return {**item, "id": _hex_id(prefix)}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text") or part.get("refusal") or ""
        for part in content or ()
        if isinstance(part, dict)
    )


def _chat_body(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The request in the chat fake's terms, so both answer (and count) alike."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            messages.append({"role": item["role"], "content": _text(item.get("content"))})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function"}
            call["function"] = {"name": item["name"], "arguments": item["arguments"]}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": _text(output)}
            )
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    functions = [
        {"type": "function", "function": {"name": t["name"], "parameters": t.get("parameters")}}
        for t in body.get("tools") or ()
        if t.get("type") == "function"
    ]
    if functions:
        chat["tools"] = functions
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(choice, str):
        chat["tool_choice"] = choice
    if body.get("parallel_tool_calls") is False:
        chat["parallel_tool_calls"] = False
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    text_format = (body.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": text_format["name"], "schema": text_format.get("schema")},
        }
    elif text_format.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


def _response_object(body: dict[str, Any], model: str) -> dict[str, Any]:
    reasoning = body.get("reasoning") or {}
    text = body.get("text") or {}
    response: dict[str, Any] = {
        "id": _hex_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": DATED_MODELS.get(model, model),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store") is not False,
        "temperature": _number(body.get("temperature")),
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        },
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [_tool(tool) for tool in body.get("tools") or ()],
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": _number(body.get("top_p")),
        "truncation": body.get("truncation") or "disabled",
        "metadata": body.get("metadata") or {},
    }
    if isinstance(body.get("user"), str):  # the spec has no null for it
        response["user"] = body["user"]
    return response


def _number(value: Any) -> float:
    return 1.0 if value is None else float(value)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        return tool
    return {
        "type": "function",
        "description": tool.get("description"),
        "name": tool["name"],
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict", True) is not False,
    }


# -- the event stream ------------------------------------------------------------------------


def _fragments(arguments: str, pieces: int = 3) -> list[str]:
    size = max(1, math.ceil(len(arguments) / pieces))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def stream_events(planned: Planned) -> list[dict[str, Any]]:
    """The events of a streamed response, in order, with their sequence numbers."""
    response = planned.response
    opening = {**response, "status": "in_progress", "completed_at": None, "output": []}
    opening.pop("usage", None)  # none yet; the spec has no null for it
    opening["incomplete_details"] = None
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
    ]
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            events.extend(_message_events(index, item, planned.tokens.get(index, [])))
        else:
            events.extend(_call_events(index, item))
    ending = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append({"type": ending, "response": response})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def _message_events(index: int, item: dict[str, Any], tokens: list[str]) -> list[dict[str, Any]]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index}
    empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "content_index": 0, "part": empty},
    ]
    for token in tokens:
        events.append(
            {
                "type": "response.output_text.delta",
                **where,
                "content_index": 0,
                "delta": token,
                "logprobs": [],
                "obfuscation": "".join(random.choices(_ALNUM, k=max(1, 12 - len(token)))),
            }
        )
    events.append(
        {
            "type": "response.output_text.done",
            **where,
            "content_index": 0,
            "text": part["text"],
            "logprobs": [],
        }
    )
    events.append({"type": "response.content_part.done", **where, "content_index": 0, "part": part})
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def _call_events(index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    where = {"item_id": item["id"], "output_index": index}
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "arguments": ""},
        }
    ]
    for fragment in _fragments(item["arguments"]):
        events.append(
            {"type": "response.function_call_arguments.delta", **where, "delta": fragment}
        )
    events.append(
        {
            "type": "response.function_call_arguments.done",
            **where,
            "name": item["name"],
            "arguments": item["arguments"],
        }
    )
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
