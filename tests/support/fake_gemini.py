"""A faithful fake of Google's Gemini API (`generateContent`, `streamGenerateContent`).

It checks what generativelanguage.googleapis.com checks: the API key (`x-goog-api-key` or
`?key=`), unknown fields (Google's "Invalid JSON payload received"), every content, tool,
tool config and generation config against the official `google-genai` types, roles
`user`/`model`, an OBJECT schema with no properties (which Gemini refuses), and that a
function-response turn answers every call of the function-call turn before it. Answers are
deterministic: an echo, forced function calls for mode ANY (each call in its own stream
event, the first with a `thoughtSignature` as Gemini 3 sends), JSON for a response schema,
and safety blocks on request. Streams are `alt=sse` with `\\r\\n\\r\\n` framing.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import deque
from typing import Any

from aiohttp import web
from google.genai import types
from pydantic import BaseModel, ValidationError

from .fake_openai import _compact, _fill
from .fake_threaded import ThreadedServer

DEFAULT_API_KEY = "AIzaSy-fake-gemini-key-0123456789abcdef"
SERVED = {"gemini-2.5-flash": "gemini-2.5-flash", "gemini-2.0-flash": "gemini-2.0-flash-001"}
TOP_LEVEL: dict[str, type[BaseModel] | None] = {
    "contents": types.Content,
    "systemInstruction": types.Content,
    "tools": types.Tool,
    "toolConfig": types.ToolConfig,
    "generationConfig": types.GenerationConfig,
    "safetySettings": types.SafetySetting,
    "cachedContent": None,
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
PATH = re.compile(
    r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents)$"
)
EMBEDDING_MODELS = {"text-embedding-004", "gemini-embedding-001"}
EMBEDDING_SIZE = 8
TOKEN = re.compile(r"\s*\S+")
SIGNATURE = "c2lnbmF0dXJlLWZvci1jYWxsLTE="  # base64 of "signature-for-call-1"


class GoogleError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": STATUS_NAMES.get(self.status, "UNKNOWN"),
        }
        if self.reason:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": "googleapis.com",
                }
            ]
        return {"error": error}


def invalid(message: str) -> GoogleError:
    return GoogleError(400, message)


class FakeGemini(ThreadedServer):
    name = "fake-gemini"

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._failures: deque[GoogleError] = deque()
        self.reset()

    @property
    def base_url(self) -> str:
        return self.url + "/v1beta"

    def reset(self) -> None:
        self.forget()
        with self._lock:
            self._failures.clear()
        self.block_prompt = False  # promptFeedback.blockReason SAFETY, no candidates
        self.safety_stop = False  # the candidate stops with finishReason SAFETY
        self.cached_tokens = 0
        self.thoughts_tokens = 0

    def fail_next(self, status: int, message: str = "Error", reason: str | None = None) -> None:
        with self._lock:
            self._failures.append(GoogleError(status, message, reason))

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen, parsed = await self._record(request)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        try:
            if failure is not None:
                raise failure
            match = PATH.match(request.path)
            if request.method != "POST" or match is None:
                raise GoogleError(404, f"Requested entity was not found: {request.path}")
            key = seen.headers.get("x-goog-api-key") or seen.query.get("key")
            if not key:
                raise GoogleError(
                    403, "Method doesn't allow unregistered callers. Please use an API Key."
                )
            if key != self.api_key:
                raise GoogleError(
                    400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
                )
            model, action = match.groups()
            if action == "batchEmbedContents":
                return web.json_response(self._embed(model, seen.body if parsed else None))
            if model not in SERVED:
                raise GoogleError(404, f"models/{model} is not found for API version v1beta.")
            if not parsed or not isinstance(seen.body, dict):
                raise invalid("Invalid JSON payload received.")
            validate(seen.body)
            answer = self.plan(seen.body, SERVED[model])
            if action == "streamGenerateContent":
                return await self._stream(request, answer, seen.query.get("alt") == "sse")
            return web.json_response(answer)
        except GoogleError as error:
            return web.json_response(error.body(), status=error.status)

    def _embed(self, model: str, body: Any) -> dict[str, Any]:
        """batchEmbedContents: one embedding per request, each of text parts only."""
        if model not in EMBEDDING_MODELS:
            raise GoogleError(404, f"models/{model} is not found for API version v1beta.")
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise invalid("* BatchEmbedContentsRequest.requests: must not be empty")
        embeddings = []
        for index, request in enumerate(requests):
            if request.get("model") != f"models/{model}":
                raise invalid(f"* requests[{index}].model: must be models/{model}")
            parts = (request.get("content") or {}).get("parts")
            if not parts or not all(isinstance(p.get("text"), str) for p in parts):
                raise invalid(f"* requests[{index}].content.parts: text parts are required")
            size = request.get("outputDimensionality") or EMBEDDING_SIZE
            text = "".join(p["text"] for p in parts)
            embeddings.append({"values": [round((len(text) + i) / 100, 4) for i in range(size)]})
        return {"embeddings": embeddings}

    async def _stream(
        self, request: web.Request, answer: dict[str, Any], sse: bool
    ) -> web.StreamResponse:
        events = stream_chunks(answer)
        if not sse:  # without alt=sse Google streams one JSON array
            return web.json_response(events)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
        return response

    def plan(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        contents = body["contents"]
        parts = contents[-1]["parts"]
        usage: dict[str, Any] = {"promptTokenCount": len(json.dumps(contents)) // 4 + 10}
        if self.cached_tokens:
            usage["cachedContentTokenCount"] = self.cached_tokens
        if self.thoughts_tokens:
            usage["thoughtsTokenCount"] = self.thoughts_tokens
        answer: dict[str, Any] = {"modelVersion": model, "responseId": _id(22)}
        if self.block_prompt:
            answer["promptFeedback"] = {"blockReason": "SAFETY"}
            answer["usageMetadata"] = {**usage, "totalTokenCount": usage["promptTokenCount"]}
            return answer
        out_parts, reason = self._reply_parts(body, parts)
        tokens = sum(len(TOKEN.findall(p.get("text", ""))) for p in out_parts) + 8 * sum(
            "functionCall" in p for p in out_parts
        )
        usage["candidatesTokenCount"] = tokens
        usage["totalTokenCount"] = usage["promptTokenCount"] + tokens + self.thoughts_tokens
        candidate = {
            "content": {"role": "model", "parts": out_parts},
            "finishReason": reason,
            "index": 0,
        }
        answer["candidates"] = [candidate]
        answer["usageMetadata"] = usage
        return answer

    def _reply_parts(
        self, body: dict[str, Any], parts: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        config = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
        declarations = [
            d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()
        ]
        if responses:
            text = "Tool results: " + "; ".join(
                str(r["response"].get("result", _compact(r["response"]))) for r in responses
            )
            return [{"text": text}], "STOP"
        if config.get("mode") == "ANY" and declarations:
            allowed = config.get("allowedFunctionNames")
            calls: list[dict[str, Any]] = []
            for declaration in declarations:
                if allowed and declaration["name"] not in allowed:
                    continue
                args = _fill(
                    _json_types(declaration.get("parameters") or {"type": "object"}),
                    declaration["name"],
                )
                call: dict[str, Any] = {"functionCall": {"name": declaration["name"], "args": args}}
                if not calls:
                    call["thoughtSignature"] = SIGNATURE
                calls.append(call)
            return calls, "STOP"
        generation = body.get("generationConfig") or {}
        if generation.get("responseSchema"):
            schema = _json_types(generation["responseSchema"])
            return [{"text": _compact(_fill(schema, "answer"))}], "STOP"
        texts = [p["text"] for p in parts if "text" in p]
        media = [p for p in parts if "inlineData" in p or "fileData" in p]
        text = ("Echo: " + " ".join(texts)).rstrip()
        if media:
            text += f" (saw {len(media)} image{'s' if len(media) > 1 else ''})"
        if self.safety_stop:
            return [{"text": text.split(" ")[0]}], "SAFETY"
        limit = generation.get("maxOutputTokens")
        tokens = TOKEN.findall(text)
        if limit is not None and len(tokens) > limit:
            return [{"text": "".join(tokens[:limit])}], "MAX_TOKENS"
        return [{"text": text}], "STOP"


def stream_chunks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer as Gemini streams it: text a few tokens per event, each call on its own."""
    base = {"modelVersion": answer["modelVersion"], "responseId": answer["responseId"]}
    if "candidates" not in answer:
        return [answer]
    candidate = answer["candidates"][0]
    pieces: list[dict[str, Any]] = []
    for part in candidate["content"]["parts"]:
        if "text" in part:
            tokens = TOKEN.findall(part["text"])
            pieces.extend({"text": "".join(tokens[i : i + 2])} for i in range(0, len(tokens), 2))
        else:
            pieces.append(part)
    usage = answer["usageMetadata"]
    chunks: list[dict[str, Any]] = []
    for position, piece in enumerate(pieces):
        chunk_candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [piece]},
            "index": 0,
        }
        last = position == len(pieces) - 1
        if last:
            chunk_candidate["finishReason"] = candidate["finishReason"]
        partial = {"promptTokenCount": usage["promptTokenCount"]}
        chunks.append(
            {**base, "candidates": [chunk_candidate], "usageMetadata": usage if last else partial}
        )
    return chunks


def _json_types(schema: Any) -> Any:
    """A Schema with Gemini's enum type names (``OBJECT``, as the SDK writes them) in JSON
    Schema's lower case, which Gemini takes as the same."""
    if isinstance(schema, list):
        return [_json_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _json_types(value) for key, value in schema.items()}
    if isinstance(schema.get("type"), str):
        out["type"] = schema["type"].lower()
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _json_types(v) for k, v in schema["properties"].items()}
    return out


def _id(length: int) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=length))


# -- validation, as the real API does it -------------------------------------------------------


def validate(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key not in TOP_LEVEL:
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            )
        model = TOP_LEVEL[key]
        if model is None:
            continue
        items = (
            value
            if isinstance(value, list) and key in ("contents", "tools", "safetySettings")
            else [value]
        )
        for index, item in enumerate(items):
            try:
                model.model_validate(item)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise invalid(
                    f"Invalid JSON payload received. {key}[{index}].{where}: {first['msg']}"
                ) from exc
    contents = body.get("contents")
    if not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            raise invalid(f"Please use a valid role: user, model. (contents[{index}].role)")
        if not content.get("parts"):
            raise invalid(
                f"* GenerateContentRequest.contents[{index}].parts: "
                "contents.parts must not be empty."
            )
    _check_function_turns(contents)
    for t, tool in enumerate(body.get("tools") or ()):
        for d, declaration in enumerate(tool.get("functionDeclarations") or ()):
            parameters = declaration.get("parameters")
            if not isinstance(parameters, dict):
                continue
            if str(parameters.get("type", "")).upper() == "OBJECT" and not parameters.get(
                "properties"
            ):
                raise invalid(
                    f"* GenerateContentRequest.tools[{t}].function_declarations[{d}]."
                    "parameters.properties: should be non-empty for OBJECT type"
                )


def _check_function_turns(contents: list[dict[str, Any]]) -> None:
    for index, content in enumerate(contents):
        calls = [p["functionCall"]["name"] for p in content["parts"] if "functionCall" in p]
        if not calls or content["role"] != "model":
            continue
        following = contents[index + 1]["parts"] if index + 1 < len(contents) else None
        if following is None:
            continue
        answered = [p["functionResponse"]["name"] for p in following if "functionResponse" in p]
        if len(answered) != len(calls):
            raise invalid(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
        if sorted(answered) != sorted(calls):
            raise invalid("Function response names must match the function call names.")
