"""A faithful fake of Anthropic's Messages API (`POST /v1/messages`), on loopback.

It checks what api.anthropic.com checks: the key (`x-api-key`, or a bearer token as SDK 2.x
sends it), the `anthropic-version` header, unknown fields, roles and content blocks, image
sources, tool schemas and `tool_choice`, and that every `tool_use` is answered by a
`tool_result` in the very next message. It answers deterministically: an echo of the last
user text, forced tool calls for `tool_choice` any or tool (arguments filled from each
schema), or JSON for `output_config.format`. Streams use Anthropic's named SSE events, with
a `ping` and `input_json_delta` fragments.

    fake = FakeAnthropic(); fake.start()
    anthropic.Anthropic(base_url=fake.url, api_key=fake.api_key)
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import string
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .anthropic_checks import DEFAULT_ERRORS, AnthropicError, invalid, validate
from .fake_openai import _compact, _fill
from .fake_threaded import ThreadedServer, abort

DEFAULT_API_KEY = "sk-ant-api03-fake-0123456789"
SERVED = {
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}
TOKEN = re.compile(r"\s*\S+")


@dataclass
class Block:
    kind: str  # "text" or "tool_use"
    tokens: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": "".join(self.tokens)}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": self.input}


@dataclass
class Plan:
    id: str
    model: str
    blocks: list[Block]
    stop_reason: str
    input_tokens: int
    output_tokens: int


class FakeAnthropic(ThreadedServer):
    name = "fake-anthropic"

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._failures: deque[AnthropicError] = deque()
        self.reset()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def reset(self) -> None:
        self.forget()
        with self._lock:
            self._failures.clear()
        self.fragment_size = 4  # characters per input_json_delta
        self.cache_read = 0  # cache_read_input_tokens to report
        self.cache_write = 0  # cache_creation_input_tokens to report
        self.error_after: int | None = None  # stream: an `error` event after N events
        self.drop_after: int | None = None  # stream: cut the connection after N events
        self.stream_delay = 0.0  # stream: seconds between events

    def fail_next(
        self, status: int, message: str | None = None, kind: str | None = None, **headers: str
    ) -> None:
        stock_kind, stock_message = DEFAULT_ERRORS.get(status, ("api_error", "Error"))
        with self._lock:
            self._failures.append(
                AnthropicError(status, message or stock_message, kind or stock_kind, headers)
            )

    # -- HTTP ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen, parsed = await self._record(request)
        headers = {"request-id": _id("req_", 24)}
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        try:
            if failure is not None:
                raise failure
            if request.method != "POST" or request.path != "/v1/messages":
                raise AnthropicError(404, "Not Found", "not_found_error")
            self._authorize(seen.headers)
            if not parsed or not isinstance(seen.body, dict):
                raise invalid("There was an issue with the format or content of your request.")
            plan = plan_reply(validate(seen.body, SERVED), self.cache_read, self.cache_write)
            if seen.body.get("stream"):
                return await self._stream(request, plan, headers)
            return web.json_response(self._message(plan), headers=headers)
        except AnthropicError as error:
            return web.json_response(
                error.body(_id("req_", 24)),
                status=error.status,
                headers={**headers, **error.headers},
            )

    def _authorize(self, headers: dict[str, str]) -> None:
        key = headers.get("x-api-key")
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        if not key and scheme.lower() == "bearer":
            key = bearer.strip()  # newer SDKs send the API key as a bearer token
        if not key:
            raise AnthropicError(401, "x-api-key header is required", "authentication_error")
        if key != self.api_key:
            raise AnthropicError(401, "invalid x-api-key", "authentication_error")
        if not headers.get("anthropic-version"):
            raise invalid("anthropic-version: header is required")

    def _usage(self, plan: Plan, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": plan.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output_tokens,
        }

    def _message(self, plan: Plan) -> dict[str, Any]:
        return {
            "id": plan.id,
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [block.render() for block in plan.blocks],
            "stop_reason": plan.stop_reason,
            "stop_sequence": None,
            "usage": self._usage(plan, plan.output_tokens),
        }

    def stream_events(self, plan: Plan) -> list[dict[str, Any]]:
        start = {**self._message(plan), "content": [], "stop_reason": None}
        start["usage"] = self._usage(plan, 1)
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {"type": "ping"},
        ]
        for index, block in enumerate(plan.blocks):
            if block.kind == "text":
                opened: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": token} for token in block.tokens]
            else:
                opened = {**block.render(), "input": {}}
                arguments = _compact(block.input) if block.input else ""
                size = self.fragment_size
                pieces = [""] + [arguments[i : i + size] for i in range(0, len(arguments), size)]
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            events.append({"type": "content_block_start", "index": index, "content_block": opened})
            events.extend(
                {"type": "content_block_delta", "index": index, "delta": d} for d in deltas
            )
            events.append({"type": "content_block_stop", "index": index})
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": plan.output_tokens},
            }
        )
        events.append({"type": "message_stop"})
        return events

    async def _stream(
        self, request: web.Request, plan: Plan, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**headers, "Content-Type": "text/event-stream; charset=utf-8"}
        )
        await response.prepare(request)
        error_after, drop_after = self.error_after, self.drop_after
        try:
            for sent, event in enumerate(self.stream_events(plan)):
                if error_after is not None and sent >= error_after:
                    overloaded = {"type": "overloaded_error", "message": "Overloaded"}
                    await response.write(_frame({"type": "error", "error": overloaded}))
                    break
                if drop_after is not None and sent >= drop_after:
                    await abort(request)
                    return response
                await response.write(_frame(event))
                await asyncio.sleep(
                    self.stream_delay
                )  # also a turn between events, as a real stream
        except ConnectionError:
            pass
        return response


def _frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _id(prefix: str, length: int) -> str:
    return prefix + "".join(random.choices(string.ascii_letters + string.digits, k=length))


# -- answers -----------------------------------------------------------------------------------


def plan_reply(body: dict[str, Any], cache_read: int = 0, cache_write: int = 0) -> Plan:
    messages = body["messages"]
    last = messages[-1]
    content = last.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    results = [b for b in blocks if b.get("type") == "tool_result"]
    images = [b for b in blocks if b.get("type") == "image"]
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    choice = body.get("tool_choice") or {}
    tools = {tool["name"]: tool for tool in body.get("tools") or ()}
    forced: list[dict[str, Any]] = []
    if choice.get("type") == "any":
        forced = list(tools.values())
        if choice.get("disable_parallel_tool_use"):
            forced = forced[:1]
    elif choice.get("type") == "tool":
        forced = [tools[choice["name"]]]
    prompt_chars = len(json.dumps(messages)) + len(json.dumps(body.get("system") or ""))
    plan = Plan(
        id=_id("msg_01", 22),
        model=SERVED[body["model"]],
        blocks=[],
        stop_reason="end_turn",
        input_tokens=prompt_chars // 4 + 10,
        output_tokens=0,
    )
    if forced and not results:
        for tool in forced:
            arguments = _fill(tool["input_schema"], tool["name"])
            plan.blocks.append(
                Block("tool_use", id=_id("toolu_01", 22), name=tool["name"], input=arguments)
            )
        plan.stop_reason = "tool_use"
        plan.output_tokens = 20 * len(forced)
        return plan
    if results:
        text = "Tool results: " + "; ".join(_result_text(r) for r in results)
    elif (body.get("output_config") or {}).get("format"):
        text = _compact(_fill(body["output_config"]["format"]["schema"], "answer"))
    else:
        text = ("Echo: " + " ".join(texts)).rstrip()
        if images:
            text += f" (saw {len(images)} image{'s' if len(images) > 1 else ''})"
    tokens = TOKEN.findall(text)
    if len(tokens) > body["max_tokens"]:
        tokens, plan.stop_reason = tokens[: body["max_tokens"]], "max_tokens"
    plan.blocks.append(Block("text", tokens=tokens))
    plan.output_tokens = len(tokens)
    return plan


def _result_text(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content or "")
