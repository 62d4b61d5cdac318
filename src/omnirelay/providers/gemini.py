"""Google's Gemini API: ``models/{model}:generateContent`` and ``:streamGenerateContent``.

System messages become ``systemInstruction``; turns become ``contents`` with ``user`` and
``model`` roles; tool calls and results become ``functionCall`` and ``functionResponse``
parts (a result is matched to its call's name by the call id); images become
``inlineData`` (base64) or ``fileData`` (an https URL, which Gemini fetches itself).

Gemini has no tool call ids. The gateway makes them, and when a call carries a
``thoughtSignature`` (Gemini 3 requires it back on the next turn) the signature rides in
the id after ``SIGNATURE_MARK``, so a client that echoes its tool call ids echoes it too.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from typing import Any

import orjson

from omnirelay.providers import gemini_embeddings
from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.errors import UpstreamFailure, error_for, error_object, text
from omnirelay.providers.gemini_stream import (
    SIGNATURE_MARK,
    GeminiStream,
    stream_call_id,
    tool_call,
)
from omnirelay.wire import gemini as wire
from omnirelay.wire.chat import content_texts
from omnirelay.wire.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamError,
)
from omnirelay.wire.media import is_remote, parse_data_url

CAPACITY_STATUSES = frozenset({429, 503})
CREDENTIAL_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


class GeminiProvider:
    name = "gemini"

    def chat_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        return self.generate_content_request(endpoint, encode_request(body), upstream_model, stream)

    def generate_content_request(
        self, endpoint: Endpoint, payload: dict[str, Any], upstream_model: str, stream: bool
    ) -> UpstreamRequest:
        """A request in Gemini's own shape (a Gemini client's, as it came) to the model."""
        model = upstream_model.removeprefix("models/")
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = {
            "x-goog-api-key": endpoint.api_key,
            "Content-Type": "application/json",
            **endpoint.headers,
        }
        url = f"{endpoint.base_url}/models/{model}:{action}"
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def embeddings_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        return gemini_embeddings.embeddings_request(endpoint, body, upstream_model)

    def embeddings_response(self, payload: bytes, body: dict[str, Any]) -> dict[str, Any]:
        return gemini_embeddings.embeddings_response(payload, body)

    def needs_inline_images(self, endpoint: Endpoint) -> bool:
        """Only when the channel says so (``inline_images``): this API fetches URLs itself."""
        return endpoint.options.get("inline_images") is True

    def chat_response(self, payload: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream returned a response that is not JSON.") from exc
        if not isinstance(body, dict):
            raise UpstreamError("The upstream returned a response that is not an object.")
        return decode_response(body)

    def stream_translator(self, model: str) -> GeminiStream:
        return GeminiStream(model, self.error)

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        error = error_object(payload)
        reasons = {
            detail.get("reason")
            for detail in error.get("details") or ()
            if isinstance(detail, dict)
        }
        failure = UpstreamFailure(
            status,
            text(error.get("message")),
            relayed={"type": "invalid_request_error", "param": None, "code": error.get("status")},
            bad_credentials=bool(reasons & CREDENTIAL_REASONS) or status in (401, 403),
        )
        return error_for(failure, retry_after, CAPACITY_STATUSES)


# -- request -------------------------------------------------------------------------------


def encode_request(body: dict[str, Any]) -> dict[str, Any]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names = _call_names(body["messages"])
    for index, message in enumerate(body["messages"]):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in content_texts(content) if text)
        elif role == "user":
            _append(contents, "user", _user_parts(content, index))
        elif role == "assistant":
            _append(contents, "model", _model_parts(message))
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            response = {"name": names.get(call_id, call_id), "response": _result(content)}
            _append(contents, "user", [{"functionResponse": response}])
        else:
            raise InvalidRequest(
                f"'messages[{index}].role' {role!r} cannot be sent to this model.",
                param=f"messages[{index}].role",
            )
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
        config = _tool_config(body.get("tool_choice"))
        if config:
            out["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(body)
    if generation:
        out["generationConfig"] = generation
    return out


def _call_names(messages: list[Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or () if isinstance(message, dict) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                names[str(call.get("id"))] = str(function.get("name"))
    return names


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    """Parallel function responses must share one turn: consecutive turns are merged."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _user_parts(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media(url, index))
        elif kind == "file":
            file = part.get("file")
            parts.append(_media(file.get("file_data") if isinstance(file, dict) else None, index))
        else:
            raise InvalidRequest(
                f"'messages[{index}].content' has a {kind!r} part, which this model's "
                "channel cannot take.",
                param=f"messages[{index}].content",
            )
    return parts


def _media(url: Any, index: int) -> dict[str, Any]:
    if isinstance(url, str):
        inline = parse_data_url(url)
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        if is_remote(url):
            mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
            return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise InvalidRequest(
        "Media must be an http(s) URL or a base64 data: URL.", param=f"messages[{index}].content"
    )


def _model_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": t} for t in content_texts(message.get("content")) if t]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        part: dict[str, Any] = {
            "functionCall": {"name": function.get("name"), "args": _args(function.get("arguments"))}
        }
        _, mark, signature = str(call.get("id") or "").partition(SIGNATURE_MARK)
        if mark and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _args(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _result(content: Any) -> dict[str, Any]:
    """A tool result as the object ``functionResponse.response`` must be."""
    text = "".join(content_texts(content))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"result": text}


def _declaration(tool: Any, index: int) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise InvalidRequest(
            f"'tools[{index}]' must be a function tool for this model.", param=f"tools[{index}]"
        )
    declared: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        declared["description"] = function["description"]
    parameters = function.get("parameters")
    if wire.has_parameters(parameters):
        declared["parameters"] = wire.schema(parameters)
    return declared


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"mode": TOOL_MODES[choice]}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    return None


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    names = {
        "temperature": "temperature",
        "top_p": "topP",
        "seed": "seed",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
        "n": "candidateCount",
    }
    for ours, theirs in names.items():
        if isinstance(body.get(ours), int | float) and not isinstance(body.get(ours), bool):
            config[theirs] = body[ours]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int):
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema" and isinstance(response_format, dict):
        given = (response_format.get("json_schema") or {}).get("schema")
        if given:
            config["responseSchema"] = wire.schema(given)
    return config


# -- response ------------------------------------------------------------------------------


def decode_response(body: dict[str, Any]) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(body.get("candidates") or ()):
        if not isinstance(candidate, dict):
            continue
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                calls.append(
                    tool_call(part, len(calls), stream_call_id(part.get("thoughtSignature")))
                )
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else texts).append(part["text"])
        reply: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
            "refusal": None,
        }
        if calls:
            for call in calls:
                call.pop("index", None)
            reply["tool_calls"] = calls
        if thoughts:
            reply["reasoning_content"] = "".join(thoughts)
        reason = wire.finish_reason(candidate.get("finishReason"), bool(calls))
        index = candidate.get("index", position)
        choices.append(
            {"index": index, "message": reply, "logprobs": None, "finish_reason": reason}
        )
    if not choices:
        # The prompt itself was blocked (promptFeedback.blockReason): no candidates at all.
        reply = {"role": "assistant", "content": "", "refusal": None}
        choices.append(
            {"index": 0, "message": reply, "logprobs": None, "finish_reason": "content_filter"}
        )
    return {
        "id": body.get("responseId") or "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("modelVersion") or "gemini",
        "choices": choices,
        "usage": wire.openai_usage(body.get("usageMetadata")),
    }
