"""Google's Gemini API, inbound: a ``generateContent`` request as the canonical chat body,
and ``embedContent`` / ``batchEmbedContents`` requests as the canonical embeddings body.

Google's JSON accepts each field under its lowerCamelCase name or its proto name
(``mimeType`` or ``mime_type``), and the ``google-genai`` SDK sends both kinds; every field
is read under either. Turns become messages (``model`` is ``assistant``), ``functionCall``
parts ``tool_calls`` and ``functionResponse`` parts ``tool`` messages (a response without an
``id`` answers the oldest unanswered call of its name), ``inlineData`` images and PDFs
``image_url`` and ``file`` parts, https ``fileData`` images ``image_url`` URLs, Gemini
``Schema`` objects JSON Schema. A stream asks for usage so that the last event can carry
``usageMetadata``.

What only a Gemini channel can serve (built-in tools such as ``googleSearch``,
``cachedContent``, files of Google's Files API, non-text output) is not refused here: it is
listed in :attr:`Inbound.native_only`, since a Gemini channel gets the request as it came.
``safetySettings`` have no equivalent elsewhere and are dropped on translation.

A field the translation reads is type-checked where it is read: a value of the wrong JSON
type is an :class:`InvalidRequest` naming where it is (a 400), never an exception of
Python's.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.media import data_url, is_remote

GOOGLE_FILES = ("https://generativelanguage.googleapis.com/", "gs://")
AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3"}
ANTHROPIC_MAX_TOKENS = 4096
TOOL_MODES = {"AUTO": "auto", "NONE": "none", "ANY": "required", "VALIDATED": "auto"}
# The keywords Gemini's Schema shares with JSON Schema, in a fixed order (the prompt count
# must not depend on a set's iteration order).
SCHEMA_KEYS = (
    "format",
    "title",
    "description",
    "enum",
    "required",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "default",
)
COUNT_KEYS = frozenset(
    {"minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"}
)
TEXT_KEYS = frozenset({"format", "title", "description", "pattern"})
LIST_KEYS = frozenset({"enum", "required"})  # repeated strings in Google's Schema
NUMBER_KEYS = frozenset({"minimum", "maximum"})
_CAPITAL = re.compile(r"(?<!^)(?=[A-Z])")
# An int64 written as a string, as proto JSON may: ASCII digits only (``str.isdigit`` takes
# "²", which ``int`` refuses) and few enough that ``int`` never meets its digit limit.
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(slots=True)
class Inbound:
    """A ``generateContent`` request, read."""

    body: dict[str, Any]
    """The canonical chat body."""
    native_only: list[str] = field(default_factory=list)
    """What in the request only a Gemini channel can serve, by where it is."""
    thinking: dict[str, Any] | None = None
    """``generationConfig.thinkingConfig``, for the channels with an equivalent."""


def get(obj: Any, name: str) -> Any:
    """A field under its lowerCamelCase ``name`` or its proto (snake_case) name."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get(_CAPITAL.sub("_", name).lower())


def to_openai(model: str, body: dict[str, Any], stream: bool) -> Inbound:
    contents = get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest(
            "contents: at least one content is required (a list of turns).", param="contents"
        )
    inbound = Inbound({"model": model})
    messages = _system(get(body, "systemInstruction"))
    calls = _Calls()
    for index, content in enumerate(contents):
        messages.extend(_content(content, index, calls, inbound.native_only))
    out = inbound.body
    out["messages"] = messages
    _tools(body, out, inbound.native_only)
    _generation(get(body, "generationConfig"), inbound)
    if get(body, "cachedContent"):
        inbound.native_only.append("cachedContent")
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return inbound


# -- contents ------------------------------------------------------------------------------


class _Calls:
    """Tool call ids: Gemini's own when it gave them, else made here and matched by name."""

    def __init__(self) -> None:
        self._open: defaultdict[str, deque[str]] = defaultdict(deque)

    def called(self, call: dict[str, Any]) -> str:
        call_id = get(call, "id")
        call_id = call_id if isinstance(call_id, str) and call_id else _new_id()
        self._open[str(get(call, "name"))].append(call_id)
        return call_id

    def answered(self, response: dict[str, Any]) -> str:
        waiting = self._open[str(get(response, "name"))]
        given = get(response, "id")
        if isinstance(given, str) and given:
            if given in waiting:
                waiting.remove(given)
            return given
        return waiting.popleft() if waiting else _new_id()


def _new_id() -> str:
    return "call_" + secrets.token_hex(12)


def _system(instruction: Any) -> list[dict[str, Any]]:
    if instruction is None:
        return []
    if isinstance(instruction, str):
        texts = [instruction] if instruction else []
    else:
        texts = [t for part in _parts(instruction, "systemInstruction") if (t := _text(part))]
    return [{"role": "system", "content": "\n".join(texts)}] if texts else []


def _parts(content: Any, where: str) -> list[Any]:
    parts = get(content, "parts")
    if not isinstance(parts, list):
        raise InvalidRequest(f"{where}.parts: a list of parts is required.", param=where)
    return parts


def _text(part: Any) -> str | None:
    text = get(part, "text")
    return text if isinstance(text, str) and not get(part, "thought") else None


def _content(
    content: Any, index: int, calls: _Calls, native_only: list[str]
) -> list[dict[str, Any]]:
    where = f"contents[{index}]"
    role = get(content, "role") or "user"
    parts = _parts(content, where)
    if role == "model":
        return [_model_turn(parts, where, calls, native_only)]
    if role not in ("user", "function"):
        said = repr(role) if isinstance(role, str) else "a " + type(role).__name__
        raise InvalidRequest(f"{where}.role: use 'user' or 'model', not {said}.", param=where)
    results: list[dict[str, Any]] = []
    pieces: list[dict[str, Any]] = []
    for position, part in enumerate(parts):
        part_where = f"{where}.parts[{position}]"
        response = get(part, "functionResponse")
        if isinstance(response, dict):
            results.append(_tool_message(response, calls))
            continue
        piece = _user_part(part, part_where, native_only)
        if piece is not None:
            pieces.append(piece)
    if pieces:
        only_text = all(piece["type"] == "text" for piece in pieces)
        text = "\n".join(piece["text"] for piece in pieces) if only_text else None
        results.append({"role": "user", "content": text if only_text else pieces})
    return results


def _model_turn(
    parts: list[Any], where: str, calls: _Calls, native_only: list[str]
) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for position, part in enumerate(parts):
        if not isinstance(part, dict):
            part_where = f"{where}.parts[{position}]"
            raise InvalidRequest(f"{part_where}: a part must be an object.", param=part_where)
        call = get(part, "functionCall")
        if isinstance(call, dict):
            call_where = f"{where}.parts[{position}].functionCall"
            name = get(call, "name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(f"{call_where}.name: a call needs a name.", param=call_where)
            args = get(call, "args")
            if args is not None and not isinstance(args, dict):
                raise InvalidRequest(
                    f"{call_where}.args: the arguments must be an object.", param=call_where
                )
            arguments = orjson.dumps(args or {}).decode()
            function = {"name": name, "arguments": arguments}
            tool_calls.append({"id": calls.called(call), "type": "function", "function": function})
        elif (text := _text(part)) is not None:
            texts.append(text)
        elif not get(part, "thought") and not _empty(part):
            native_only.append(f"{where}.parts[{position}]")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _empty(part: Any) -> bool:
    """A part that carries nothing but a thought signature or metadata."""
    return isinstance(part, dict) and not any(
        get(part, name) is not None
        for name in ("inlineData", "fileData", "executableCode", "codeExecutionResult")
    )


def _tool_message(response: dict[str, Any], calls: _Calls) -> dict[str, Any]:
    result = get(response, "response")
    content = orjson.dumps(result if result is not None else {}).decode()
    return {"role": "tool", "tool_call_id": calls.answered(response), "content": content}


def _user_part(part: Any, where: str, native_only: list[str]) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where}: a part must be an object.", param=where)
    text = get(part, "text")
    if isinstance(text, str):
        return {"type": "text", "text": text}
    inline = get(part, "inlineData")
    if isinstance(inline, dict):
        mime, data = get(inline, "mimeType"), get(inline, "data")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise InvalidRequest(
                f"{where}.inlineData: mimeType and data (base64) must be strings.", param=where
            )
        return _inline(mime, data, where)
    file = get(part, "fileData")
    if isinstance(file, dict):
        mime, uri = get(file, "mimeType") or "", get(file, "fileUri")
        if not isinstance(mime, str) or not isinstance(uri, str):
            raise InvalidRequest(
                f"{where}.fileData: fileUri (and mimeType) must be strings.", param=where
            )
        if mime.startswith("image/") and is_remote(uri) and not uri.startswith(GOOGLE_FILES):
            return {"type": "image_url", "image_url": {"url": uri}}
        native_only.append(f"{where}.fileData")
        return None
    if get(part, "thought") or _empty(part):
        return None
    native_only.append(where)
    return None


def _inline(mime: str, data: str, where: str) -> dict[str, Any]:
    mime = mime.lower()
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": data_url(mime, data)}}
    if mime == "application/pdf":
        file = {"file_data": data_url(mime, data), "filename": "document.pdf"}
        return {"type": "file", "file": file}
    if mime in AUDIO_FORMATS:
        return {"type": "input_audio", "input_audio": {"data": data, "format": AUDIO_FORMATS[mime]}}
    raise InvalidRequest(
        f"{where}.inlineData: '{mime}' data cannot be relayed; send images, PDFs, "
        "or WAV or MP3 audio.",
        param=where,
    )


# -- tools ---------------------------------------------------------------------------------


def _tools(body: dict[str, Any], out: dict[str, Any], native_only: list[str]) -> None:
    declared: list[dict[str, Any]] = []
    tools = get(body, "tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{index}]: a tool must be an object.", param="tools")
        for name, value in tool.items():
            if name in ("functionDeclarations", "function_declarations"):
                where = f"tools[{index}].functionDeclarations"
                if not isinstance(value, list):
                    raise InvalidRequest(f"{where}: a list of functions is required.", param=where)
                declared.extend(_declaration(d, f"{where}[{n}]") for n, d in enumerate(value))
            elif value is not None:
                native_only.append(f"tools[{index}].{name}")
    config = get(get(body, "toolConfig"), "functionCallingConfig")
    mode = str(get(config, "mode") or "AUTO").upper()
    allowed = get(config, "allowedFunctionNames")
    if allowed is not None and not (
        isinstance(allowed, list) and all(isinstance(name, str) for name in allowed)
    ):
        where = "toolConfig.functionCallingConfig.allowedFunctionNames"
        raise InvalidRequest(f"{where}: a list of function names is required.", param=where)
    if declared and mode == "ANY" and allowed:
        declared = [tool for tool in declared if tool["function"]["name"] in allowed]
        if len(declared) == 1:
            only = declared[0]["function"]["name"]
            out["tool_choice"] = {"type": "function", "function": {"name": only}}
    if declared:
        out["tools"] = declared
        if "tool_choice" not in out and mode in TOOL_MODES and mode != "AUTO":
            out["tool_choice"] = TOOL_MODES[mode]


def _declaration(declaration: Any, where: str) -> dict[str, Any]:
    name = get(declaration, "name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name: a function needs a name.", param=where)
    given = get(declaration, "parametersJsonSchema")
    if given is None:
        given = json_schema(get(declaration, "parameters"), f"{where}.parameters")
    elif not isinstance(given, dict):
        raise InvalidRequest(
            f"{where}.parametersJsonSchema: a JSON Schema object is required.", param=where
        )
    parameters = given or None
    function: dict[str, Any] = {
        "name": name,
        "parameters": parameters or {"type": "object", "properties": {}},
    }
    description = get(declaration, "description")
    if isinstance(description, str) and description:
        function["description"] = description
    return {"type": "function", "function": function}


def json_schema(node: Any, where: str = "schema") -> dict[str, Any] | None:
    """A Gemini ``Schema`` as JSON Schema: lower-case types, ``nullable`` as a type list.
    None for none; a field of the wrong type is refused, as Google refuses it."""
    if node is None:
        return None
    if not isinstance(node, dict):
        raise InvalidRequest(f"{where}: a Schema must be an object.", param=where)
    out: dict[str, Any] = {}
    kind = get(node, "type")
    if kind is not None and not isinstance(kind, str):
        raise InvalidRequest(f"{where}.type: a type name is required.", param=where)
    if kind and kind.upper() != "TYPE_UNSPECIFIED":
        out["type"] = [kind.lower(), "null"] if get(node, "nullable") else kind.lower()
    for key in SCHEMA_KEYS:
        value = get(node, key)
        if value is not None:
            out[key] = _schema_value(key, value, f"{where}.{key}")
    properties = get(node, "properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise InvalidRequest(f"{where}.properties: an object is required.", param=where)
        out["properties"] = {
            name: json_schema(sub, f"{where}.properties.{name}") or {}
            for name, sub in properties.items()
        }
    items = get(node, "items")
    if items is not None:
        out["items"] = json_schema(items, f"{where}.items")
    any_of = get(node, "anyOf")
    if any_of is not None:
        if not isinstance(any_of, list) or not any_of:
            raise InvalidRequest(f"{where}.anyOf: a list of Schemas is required.", param=where)
        out["anyOf"] = [
            json_schema(sub, f"{where}.anyOf[{n}]") or {} for n, sub in enumerate(any_of)
        ]
    return out


def _schema_value(key: str, value: Any, where: str) -> Any:
    if key in COUNT_KEYS:
        return _count(value, where)
    if key in TEXT_KEYS and not isinstance(value, str):
        raise InvalidRequest(f"{where}: a string is required.", param=where)
    if key in LIST_KEYS and not (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    ):
        raise InvalidRequest(f"{where}: a list of strings is required.", param=where)
    if key == "required" and len(set(value)) != len(value):
        raise InvalidRequest(f"{where}: a name is listed twice.", param=where)
    if key in NUMBER_KEYS and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise InvalidRequest(f"{where}: a number is required.", param=where)
    return value


def _count(value: Any, where: str) -> int:
    """A Schema's ``minItems`` and the like: an int64, which proto JSON writes as a string."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(f"{where}: expected an integer of at least 0.", param=where)
    return value


# -- generationConfig ----------------------------------------------------------------------


def _generation(config: Any, inbound: Inbound) -> None:
    if not isinstance(config, dict):
        return
    out = inbound.body
    names = {
        "temperature": "temperature",
        "topP": "top_p",
        "seed": "seed",
        "presencePenalty": "presence_penalty",
        "frequencyPenalty": "frequency_penalty",
    }
    for theirs, ours in names.items():
        value = get(config, theirs)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[ours] = value
    for theirs, ours in (("maxOutputTokens", "max_tokens"), ("candidateCount", "n")):
        value = get(config, theirs)
        if value is not None:
            out[ours] = _integer(value, f"generationConfig.{theirs}")
    stops = get(config, "stopSequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(stop, str) for stop in stops)
    ):
        where = "generationConfig.stopSequences"
        raise InvalidRequest(f"{where}: a list of strings is required.", param=where)
    if stops:
        out["stop"] = stops
    _response_format(config, out)
    modalities = get(config, "responseModalities")
    if isinstance(modalities, list) and any(str(m).upper() != "TEXT" for m in modalities):
        inbound.native_only.append("generationConfig.responseModalities")
    if get(config, "speechConfig") is not None:
        inbound.native_only.append("generationConfig.speechConfig")
    thinking = get(config, "thinkingConfig")
    if isinstance(thinking, dict):
        inbound.thinking = thinking


def _integer(value: Any, where: str) -> int:
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)  # proto JSON may write 64-bit integers as strings
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"{where}: expected an integer of at least 1.", param=where)
    return value


def _response_format(config: dict[str, Any], out: dict[str, Any]) -> None:
    schema = get(config, "responseJsonSchema")
    if schema is None:
        schema = json_schema(get(config, "responseSchema"), "generationConfig.responseSchema")
    elif not isinstance(schema, dict):
        where = "generationConfig.responseJsonSchema"
        raise InvalidRequest(f"{where}: a JSON Schema object is required.", param=where)
    if schema:
        json_spec = {"name": "response", "schema": schema}
        out["response_format"] = {"type": "json_schema", "json_schema": json_spec}
    elif get(config, "responseMimeType") == "application/json":
        out["response_format"] = {"type": "json_object"}


def reasoning_fields(
    thinking: dict[str, Any] | None, dialect: str, max_tokens: int | None
) -> dict[str, Any]:
    """``thinkingConfig`` as the fields of a channel's dialect that ask for the same:
    ``reasoning_effort`` (``openai``, ``azure``) or ``thinking`` (``anthropic``). Nothing
    for a budget of 0 or -1 (the model's own choice), nor for other dialects."""
    if not thinking:
        return {}
    level = get(thinking, "thinkingLevel")
    budget = get(thinking, "thinkingBudget")
    budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else None
    if dialect in ("openai", "azure"):
        if isinstance(level, str) and level.lower() in ("minimal", "low", "medium", "high"):
            return {"reasoning_effort": level.lower()}
        if budget is not None and budget > 0:
            effort = "low" if budget <= 1024 else "medium" if budget <= 8192 else "high"
            return {"reasoning_effort": effort}
    if dialect == "anthropic" and budget is not None and budget > 0:
        # Anthropic's least budget is 1024, and the budget must stay below max_tokens
        # (the channel's default_max_tokens, 4096 unless set, when the client sent none).
        tokens = max(budget, 1024)
        if tokens < (max_tokens or ANTHROPIC_MAX_TOKENS):
            return {"thinking": {"type": "enabled", "budget_tokens": tokens}}
    return {}


# -- embeddings ----------------------------------------------------------------------------


def embed_to_openai(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """``embedContent``: one content, one embedding."""
    out: dict[str, Any] = {"model": model, "input": _embedded_text(body, "content")}
    _dimensions([body], out)
    return out


def batch_embed_to_openai(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """``batchEmbedContents``: one embedding per request, all of the model in the path."""
    requests = get(body, "requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("requests: at least one request is required.", param="requests")
    texts: list[str] = []
    for index, request in enumerate(requests):
        named = get(request, "model")
        if named is not None and str(named).removeprefix("models/") != model:
            raise InvalidRequest(
                f"requests[{index}].model: every request must be for models/{model}.",
                param="requests",
            )
        texts.append(_embedded_text(request, f"requests[{index}].content"))
    out: dict[str, Any] = {"model": model, "input": texts}
    _dimensions(requests, out)
    return out


def _embedded_text(request: Any, where: str) -> str:
    content = get(request, "content")
    texts: list[str] = []
    for position, part in enumerate(_parts(content, where)):
        text = get(part, "text")
        if not isinstance(text, str):
            raise InvalidRequest(
                f"{where}.parts[{position}]: only text can be embedded here.", param=where
            )
        texts.append(text)
    return " ".join(texts)


def _dimensions(requests: list[Any], out: dict[str, Any]) -> None:
    # Each size is checked before the set is made: a list or object is not hashable.
    sizes = {
        _integer(size, "outputDimensionality")
        for request in requests
        if (size := get(request, "outputDimensionality")) is not None
    }
    if len(sizes) > 1:
        raise InvalidRequest(
            "outputDimensionality: every request of a batch must ask for the same size.",
            param="requests",
        )
    if sizes:
        out["dimensions"] = sizes.pop()
