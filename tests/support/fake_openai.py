"""A faithful fake of the OpenAI API: real HTTP on loopback, in a thread of its own.

The fake serves `POST /v1/chat/completions` (plain and SSE), `POST /v1/responses` (plain
and SSE; `fake_openai_responses`), `GET /v1/models` and `GET /v1/models/{id}` the way
api.openai.com does: the same auth and error bodies, requests
validated against the official spec, the seed's documented response for the seed's request,
and deterministic, real-looking answers for everything else. It runs its own event loop in its
own thread, so a blocking client in the test thread never stalls it.

    fake = FakeOpenAI()
    fake.start()
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key)
    ...
    fake.stop()
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import string
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .fake_threaded import LoopbackServer, abort
from .openapi import leaf_error, openai_wording, property_names, schema_errors
from .seed import SEED_REQUEST, SEED_RESPONSE

DEFAULT_API_KEY = "sk-upstream-secret"
DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini")
DATED_MODELS = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
SYSTEM_FINGERPRINT: str = SEED_RESPONSE["system_fingerprint"]
TOOL_CALL_COMPLETION_TOKENS = 16

_MODEL_CREATED = {
    "gpt-4o": 1715367049,
    "gpt-4o-mini": 1721172741,
    "gpt-4o-2024-08-06": 1722814719,
    "gpt-4o-mini-2024-07-18": 1721172717,
}
_ALNUM = string.ascii_letters + string.digits
_TOKEN_RE = re.compile(r"\s*\S+")
_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: ("The requested resource does not exist.", "invalid_request_error", None),
    409: ("The request conflicts with the current state.", "invalid_request_error", None),
    422: ("The request could not be processed.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again in 20ms.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
}
_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
    "field (with blank username) if you're accessing the API from your browser and are "
    "prompted for a username. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)


@dataclass
class ReceivedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # e.g. "/v1/chat/completions" (no query string)
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when empty or not JSON


class _ApiError(Exception):
    """An OpenAI-shaped error response, raised inside request handling."""

    def __init__(
        self,
        status: int,
        message: str,
        err_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
        self.headers = headers or {}


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class _Choice:
    finish_reason: str
    content: str | None = None
    tokens: list[str] = field(default_factory=list)  # the content, token by token
    tool_calls: list[_ToolCall] = field(default_factory=list)


@dataclass
class _Completion:
    id: str
    created: int
    model: str
    choices: list[_Choice]
    prompt_tokens: int
    completion_tokens: int
    logprobs: bool = False
    top_logprobs: int = 0


class FakeOpenAI(LoopbackServer):
    """The fake upstream. Every public method is synchronous and thread-safe."""

    name = "FakeOpenAI"

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._failures: deque[_ApiError] = deque()
        self._drop_after: int | None = None
        self.reset()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------- knobs

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request so far, in order (a snapshot)."""
        with self._lock:
            return list(self._received)

    def reset(self) -> None:
        """Forget received requests and put every behaviour knob back to its default."""
        with self._lock:
            self._received.clear()
            self._failures.clear()
            self._drop_after = None
        self.stream_delay: float = 0.0  # seconds between stream events
        self.answer_delay: float = 0.0  # seconds before the status line of a chat answer
        self.stall_after: int | None = None  # stream: after this many events, go silent
        self.stalls = 0  # streams that went silent so far
        self.stream_ends: list[tuple[float, str]] = []  # (monotonic time, "done" | "gone")
        self.omit_stream_usage: bool = False  # ignore stream_options like some vendors do
        self.sparse_response: bool = False  # non-stream: leave out the optional-looking fields
        self.models: list[str] = list(DEFAULT_MODELS)
        self.responses = _responses().ResponsesState()  # what `store` kept
        self.fail_every = 0  # every Nth request fails: 500 and 429 by turns (0: none)
        self._served = 0
        self._waiting = 0
        self.peak_waiting = 0  # the most chat answers held in answer_delay at once

    def fail_next(
        self,
        status: int,
        message: str | None = None,
        *,
        err_type: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests (any path) with an OpenAI error of `status`.

        `message` and `err_type` default to what OpenAI sends for that status (e.g. 429:
        type "requests"). `code` also takes OpenAI's (429: "rate_limit_exceeded") when neither
        `message` nor `err_type` is given; otherwise it is exactly what was passed.
        """
        fallback_type = "server_error" if status >= 500 else "invalid_request_error"
        stock_message, stock_type, stock_code = _DEFAULT_ERRORS.get(
            status, ("The request failed.", fallback_type, None)
        )
        stock = message is None and err_type is None
        with self._lock:
            self._failures.extend(
                _ApiError(
                    status,
                    stock_message if message is None else message,
                    stock_type if err_type is None else err_type,
                    code=stock_code if stock and code is None else code,
                    headers=dict(headers or {}),
                )
                for _ in range(times)
            )

    def drop_next_stream_after(self, n_events: int) -> None:
        """Cut the next chat stream's TCP connection after `n_events` SSE events."""
        with self._lock:
            self._drop_after = n_events

    # ----------------------------------------------------------------- HTTP

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        raw = await request.read()
        body: Any = None
        parsed = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                parsed = False
        with self._lock:
            self._received.append(
                ReceivedRequest(
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                )
            )
            failure = self._failures.popleft() if self._failures else None
            self._served += 1
            if failure is None and self.fail_every and self._served % self.fail_every == 0:
                status = 500 if (self._served // self.fail_every) % 2 else 429
                message, err_type, code = _DEFAULT_ERRORS.get(
                    status, ("The server had an error.", "server_error", None)
                )
                failure = _ApiError(status, message, err_type, code=code, headers={})
        headers = {
            "x-request-id": "req_" + "".join(random.choices("0123456789abcdef", k=32)),
            "openai-version": "2020-10-01",
        }
        try:
            if failure is not None:
                raise failure
            method, path = request.method, request.path
            if method == "POST" and path == "/v1/chat/completions":
                self._authorize(request)
                completion, stream = self._plan_chat(body, parsed)
                if self.answer_delay:
                    self._waiting += 1
                    self.peak_waiting = max(self.peak_waiting, self._waiting)
                    try:
                        await asyncio.sleep(self.answer_delay)
                    finally:
                        self._waiting -= 1
                headers["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
                if stream:
                    return await self._stream(request, completion, body, headers)
                return _json_response(self._render(completion), headers)
            if method == "POST" and path == "/v1/responses":
                self._authorize(request)
                responses = _responses()
                planned = responses.plan_response(body, parsed, self.models, self.responses)
                if self.answer_delay:
                    await asyncio.sleep(self.answer_delay)
                if planned.stream:
                    events = [responses.frame(e) for e in responses.stream_events(planned)]
                    return await self._send_events(request, events, headers)
                return _json_response(planned.response, headers)
            if method == "GET" and path == "/v1/models":
                self._authorize(request)
                data = [_model_object(m) for m in self.models]
                return _json_response({"object": "list", "data": data}, headers)
            if method == "GET" and path.startswith("/v1/models/"):
                self._authorize(request)
                model = path[len("/v1/models/") :]
                if model not in self.models:
                    raise _ApiError(
                        404,
                        f"The model '{model}' does not exist",
                        param="model",
                        code="model_not_found",
                    )
                return _json_response(_model_object(model), headers)
            raise _ApiError(404, f"Invalid URL ({method} {path})")
        except _ApiError as exc:
            return web.Response(
                status=exc.status,
                text=json.dumps(exc.body, indent=4, ensure_ascii=False) + "\n",
                content_type="application/json",
                headers={**headers, **exc.headers},
            )

    def _authorize(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _ApiError(401, _NO_KEY_MESSAGE)
        key = key.strip()
        if key != self.api_key:
            raise _ApiError(
                401,
                f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    # ----------------------------------------------------------------- chat

    def _plan_chat(self, body: Any, parsed: bool) -> tuple[_Completion, bool]:
        """Validate a chat request like OpenAI does and decide the whole answer."""
        if not parsed or body is None:
            raise _ApiError(400, _BAD_JSON_MESSAGE)
        if isinstance(body, dict):
            known = property_names("CreateChatCompletionRequest")
            for key in body:
                if key not in known:
                    raise _ApiError(400, f"Unrecognized request argument supplied: {key}")
        error = leaf_error(schema_errors("CreateChatCompletionRequest", body))
        if error is not None:
            message, param, code = openai_wording(error)
            raise _ApiError(400, message, param=param, code=code)
        stream = bool(body.get("stream"))
        if body.get("stream_options") is not None and not stream:
            raise _ApiError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        model: str = body["model"]
        if model not in self.models:
            raise _ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        _check_schemas(body)
        if _is_seed(body):
            return _seed_completion(), stream
        return _plan(body), stream

    def _render(self, completion: _Completion) -> dict[str, Any]:
        """The non-stream chat.completion object."""
        sparse = self.sparse_response
        choices: list[dict[str, Any]] = []
        for index, choice in enumerate(completion.choices):
            message: dict[str, Any] = {"role": "assistant", "content": choice.content}
            if choice.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in choice.tool_calls
                ]
            if not sparse:
                message["refusal"] = None
                if not choice.tool_calls:
                    message["annotations"] = []
            rendered: dict[str, Any] = {"index": index, "message": message}
            if not sparse:
                rendered["logprobs"] = (
                    _logprobs(choice.tokens, completion.top_logprobs)
                    if completion.logprobs and choice.content is not None
                    else None
                )
            rendered["finish_reason"] = choice.finish_reason
            choices.append(rendered)
        out: dict[str, Any] = {
            "id": completion.id,
            "object": "chat.completion",
            "created": completion.created,
            "model": completion.model,
            "choices": choices,
            "usage": _usage(completion, details=not sparse),
        }
        if not sparse:
            out["system_fingerprint"] = SYSTEM_FINGERPRINT
        return out

    async def _stream(
        self,
        request: web.Request,
        completion: _Completion,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> web.StreamResponse:
        stream_options = body.get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage")) and not self.omit_stream_usage
        events = [
            f"data: {json.dumps(chunk, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()
            for chunk in _chunks(completion, include_usage)
        ]
        events.append(b"data: [DONE]\n\n")
        return await self._send_events(request, events, headers)

    async def _send_events(
        self, request: web.Request, events: list[bytes], headers: dict[str, str]
    ) -> web.StreamResponse:
        """Send SSE events with the stream knobs applied (delay, stall, drop)."""
        with self._lock:
            drop_after, self._drop_after = self._drop_after, None
        delay = self.stream_delay
        response = web.StreamResponse(
            status=200,
            headers={
                **headers,
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)
        stall_after = self.stall_after
        try:
            for sent, event in enumerate(events):
                if drop_after is not None and sent >= drop_after:
                    break
                if stall_after is not None and sent >= stall_after:
                    self.stalls += 1
                    await asyncio.sleep(3600)  # silent until the client goes away
                if sent and delay > 0:
                    await asyncio.sleep(delay)
                await response.write(event)
            if drop_after is not None:
                await abort(request)
            self.stream_ends.append((time.monotonic(), "done"))
        except ConnectionError:
            self.stream_ends.append((time.monotonic(), "gone"))
        except asyncio.CancelledError:
            # The client went away: the runner cancels handlers on disconnect.
            self.stream_ends.append((time.monotonic(), "gone"))
            raise
        return response


# --------------------------------------------------------------------- building answers


def _responses() -> Any:
    """The Responses API module, which builds on this one's answers (imported late)."""
    from . import fake_openai_responses

    return fake_openai_responses


def _json_response(obj: Any, headers: dict[str, str]) -> web.Response:
    # OpenAI pretty-prints non-stream bodies.
    return web.Response(
        body=json.dumps(obj, indent=2, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _model_object(model: str) -> dict[str, Any]:
    return {
        "id": model,
        "object": "model",
        "created": _MODEL_CREATED.get(model, 1700000000),
        "owned_by": "system",
    }


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(random.choices(_ALNUM, k=length))


def _is_seed(body: dict[str, Any]) -> bool:
    return (
        body.get("model") == SEED_REQUEST["model"]
        and body.get("messages") == SEED_REQUEST["messages"]
        and body.get("tools") == SEED_REQUEST["tools"]
        and body.get("tool_choice") in (None, "auto", "required")
        and body.get("n") in (None, 1)
    )


def _seed_completion() -> _Completion:
    choice = SEED_RESPONSE["choices"][0]
    calls = [
        _ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in choice["message"]["tool_calls"]
    ]
    usage = SEED_RESPONSE["usage"]
    return _Completion(
        id=SEED_RESPONSE["id"],
        created=SEED_RESPONSE["created"],
        model=SEED_RESPONSE["model"],
        choices=[_Choice(finish_reason=choice["finish_reason"], tool_calls=calls)],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens_for(messages: list[dict[str, Any]]) -> int:
    """The fake's prompt token count: message text characters // 4, plus 10."""
    return sum(len(_text_of(m.get("content"))) for m in messages) // 4 + 10


def _plan(body: dict[str, Any]) -> _Completion:
    messages: list[dict[str, Any]] = body["messages"]
    user_text = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    functions = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
    tool_choice = body.get("tool_choice")
    forced: list[dict[str, Any]] = []
    finish_reason = "tool_calls"
    if functions and isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = tool_choice["function"]["name"]
        forced = [f for f in functions if f["name"] == name]
        if not forced:
            raise _ApiError(
                400,
                f"Invalid value for 'tool_choice': function '{name}' not found in 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
        finish_reason = "stop"  # what OpenAI reports when a named function is forced
    elif functions and tool_choice == "required":
        parallel = body.get("parallel_tool_calls") is not False
        forced = functions if parallel else functions[:1]

    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    choices: list[_Choice] = []
    completion_tokens = 0
    for _ in range(body.get("n") or 1):
        if forced:
            calls = [
                _ToolCall(
                    _random_id("call_", 24),
                    f["name"],
                    _compact(_fill(f.get("parameters") or {"type": "object"}, f["name"])),
                )
                for f in forced
            ]
            choices.append(_Choice(finish_reason=finish_reason, tool_calls=calls))
            completion_tokens += TOOL_CALL_COMPLETION_TOKENS
            continue
        tokens = _TOKEN_RE.findall(_content_for(body, user_text))
        reason = "stop"
        if limit is not None and len(tokens) > limit:
            tokens, reason = tokens[:limit], "length"
        choices.append(_Choice(finish_reason=reason, content="".join(tokens), tokens=tokens))
        completion_tokens += len(tokens)
    model: str = body["model"]
    return _Completion(
        id=_random_id("chatcmpl-", 29),
        created=int(time.time()),
        model=DATED_MODELS.get(model, model),
        choices=choices,
        prompt_tokens=prompt_tokens_for(messages),
        completion_tokens=completion_tokens,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=body.get("top_logprobs") or 0,
    )


def _check_schemas(body: dict[str, Any]) -> None:
    """The JSON Schemas a request gives must be schemas, as OpenAI checks them (its
    ``invalid_function_parameters`` and "Invalid schema for response_format" 400s)."""
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") or {}
        try:
            Draft202012Validator.check_schema(function.get("parameters") or {})
        except SchemaError as error:
            raise _ApiError(
                400,
                f"Invalid schema for function '{function.get('name')}': {error.message}",
                param=f"tools[{index}].function.parameters",
                code="invalid_function_parameters",
            ) from error
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        try:
            Draft202012Validator.check_schema(spec.get("schema") or {})
        except SchemaError as error:
            raise _ApiError(
                400,
                f"Invalid schema for response_format '{spec.get('name')}': {error.message}",
                param="response_format",
            ) from error


def _content_for(body: dict[str, Any], user_text: str) -> str:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"].get("schema") or {"type": "object"}
        return _compact(_fill(schema, response_format["json_schema"]["name"]))
    if response_format.get("type") == "json_object":
        return _compact({"echo": user_text})
    return ("Echo: " + user_text).rstrip()


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _fill(schema: Any, name: str, depth: int = 0) -> Any:
    """A trivially-filled value matching `schema` (required properties only)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf"):
        if schema.get(combinator):
            return _fill(schema[combinator][0], name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {
            key: _fill(properties.get(key, {}), key, depth + 1)
            for key in schema.get("required") or []
        }
    if kind == "array":
        return []
    if kind == "integer":
        return max(0, int(schema.get("minimum", 0)))
    if kind == "number":
        return max(0.0, float(schema.get("minimum", 0.0)))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return f"example {name}"


def _logprob_entry(token: str, index: int, top: int) -> dict[str, Any]:
    logprob = -round(0.01 * (index % 7 + 1), 6)
    entry = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    alternatives = [
        {"token": f"{token}{k}", "logprob": logprob - k, "bytes": list(f"{token}{k}".encode())}
        for k in range(1, top)
    ]
    return {**entry, "top_logprobs": [entry, *alternatives] if top else []}


def _logprobs(tokens: list[str], top: int, start: int = 0) -> dict[str, Any]:
    return {
        "content": [_logprob_entry(t, start + i, top) for i, t in enumerate(tokens)],
        "refusal": None,
    }


def _usage(completion: _Completion, details: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def _fragments(arguments: str, pieces: int = 3) -> list[str]:
    size = max(1, math.ceil(len(arguments) / pieces))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def _chunks(completion: _Completion, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The chat.completion.chunk objects of a stream, in order (without [DONE])."""

    def chunk(
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": completion.id,
            "object": "chat.completion.chunk",
            "created": completion.created,
            "model": completion.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {
                    "index": index,
                    "delta": delta,
                    "logprobs": logprobs,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if include_usage:
            out["usage"] = None
        return out

    for index, choice in enumerate(completion.choices):
        if choice.tool_calls:
            for position, call in enumerate(choice.tool_calls):
                header = {
                    "index": position,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                if position == 0:
                    delta = {"role": "assistant", "content": None, "tool_calls": [header]}
                    yield chunk(index, {**delta, "refusal": None})
                else:
                    yield chunk(index, {"tool_calls": [header]})
                for fragment in _fragments(call.arguments):
                    argument_delta = {"index": position, "function": {"arguments": fragment}}
                    yield chunk(index, {"tool_calls": [argument_delta]})
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            for position, token in enumerate(choice.tokens):
                logprobs = (
                    _logprobs([token], completion.top_logprobs, position)
                    if completion.logprobs
                    else None
                )
                yield chunk(index, {"content": token}, logprobs=logprobs)
        yield chunk(index, {}, finish_reason=choice.finish_reason)
    if include_usage:
        yield {
            "id": completion.id,
            "object": "chat.completion.chunk",
            "created": completion.created,
            "model": completion.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": _usage(completion),
        }
