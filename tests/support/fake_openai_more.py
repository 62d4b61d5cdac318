"""The fake OpenAI upstream, extended with the operations beyond chat.

Embeddings, moderations, legacy completions (plain and SSE), image generations, edits and
variations (multipart), speech (raw bytes in pieces, or SSE), transcriptions and
translations (multipart; the duration read from a WAV upload) and rerank (Jina's shape).
JSON requests are validated against the official spec; multipart ones are checked field by
field. Each request is recorded, multipart ones with their fields and file sizes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import time
import wave
from typing import Any

from aiohttp import BodyPartReader, web

from .fake_openai import FakeOpenAI, ReceivedRequest, _ApiError, _json_response
from .openapi import leaf_error, openai_wording, request_errors

PNG = b"\x89PNG\r\n\x1a\n"
FAKE_AUDIO = [b"ID3\x04\x00\x00\x00\x00\x00\x00", b"\xff\xfb\x90\x00" * 64, b"\xff\xfb" * 32]
SPEC_JSON_PATHS = (
    "/v1/embeddings",
    "/v1/moderations",
    "/v1/completions",
    "/v1/images/generations",
    "/v1/audio/speech",
)
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip
IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence",
     "violence/graphic"}
)  # fmt: skip


MAX_DIMENSIONS = 1536
MAX_IMAGES = 10


def words(text: str) -> int:
    return len(text.split())


def prompt_tokens(prompt: Any) -> int:
    """A legacy prompt's tokens: words of text, or the length of token arrays (the spec
    allows a string, strings, an array of tokens, or arrays of them)."""
    if isinstance(prompt, str):
        return words(prompt)
    if all(isinstance(item, int | float) for item in prompt):  # 1.0 is a JSON integer
        return len(prompt)
    return sum(prompt_tokens(item) for item in prompt)


class FakeOpenAIMore(FakeOpenAI):
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method != "POST" or path not in HANDLERS:
            return await super()._handle(request)
        if request.content_type == "multipart/form-data":
            body: Any = await _read_form(request)
        else:
            body = json.loads(await request.read() or b"null")
        with self._lock:
            self._received.append(
                ReceivedRequest(
                    "POST", path, {k.lower(): v for k, v in request.headers.items()}, body
                )
            )
            failure = self._failures.popleft() if self._failures else None
        try:
            if failure is not None:
                raise failure
            self._authorize(request)
            if path in SPEC_JSON_PATHS:
                # Refused as OpenAI refuses it: its wording, naming the parameter.
                error = leaf_error(request_errors("POST", path, body))
                if error is not None:
                    message, param, code = openai_wording(error)
                    raise _ApiError(400, message, param=param, code=code)
            return await HANDLERS[path](request, body)
        except _ApiError as exc:
            return web.json_response(exc.body, status=exc.status, headers=exc.headers)


async def _read_form(request: web.Request) -> dict[str, Any]:
    """Fields as text, and files as {"filename", "content_type", "data"}; repeats as lists."""
    form: dict[str, Any] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader) and part.name
        if part.filename is None:
            value: Any = (await part.read()).decode()
        else:
            data = await part.read()
            value = {"filename": part.filename, "content_type": part.headers.get("Content-Type"),
                     "data": data}  # fmt: skip
        if part.name in form:
            existing = form[part.name]
            form[part.name] = (
                [*existing, value] if isinstance(existing, list) else [existing, value]
            )
        else:
            form[part.name] = value
    return form


async def _embeddings(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if inputs and isinstance(inputs[0], int | float):  # one array of tokens
        inputs = [inputs]
    size = body.get("dimensions") or 8
    if isinstance(size, bool) or not isinstance(size, int):
        raise _ApiError(400, "Invalid type for 'dimensions': expected an integer.",
                        param="dimensions", code="invalid_type")  # fmt: skip
    if size > MAX_DIMENSIONS:
        # As OpenAI refuses more dimensions than the model has (1,536 for -3-small).
        raise _ApiError(400, f"Invalid value for 'dimensions': at most {MAX_DIMENSIONS}.",
                        param="dimensions", code="invalid_value")  # fmt: skip
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        tokens += prompt_tokens(item)
        vector = [round(((index + 1) * (i + 3) % 17) / 17 - 0.5, 6) for i in range(size)]
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json({"object": "list", "data": data, "model": body["model"], "usage": usage})


async def _moderations(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    raw = body["input"]
    items = [raw] if isinstance(raw, str) else raw
    if items and isinstance(items[0], dict):
        items = [items]  # one multi-modal input
    results = []
    for item in items:
        parts = item if isinstance(item, list) else [{"type": "text", "text": item}]
        kinds = {p["type"].removesuffix("_url") for p in parts}
        text = " ".join(p.get("text", "") for p in parts)
        flagged = "kill" in text.lower()
        results.append({
            "flagged": flagged,
            "categories": {c: flagged and c == "violence" for c in MODERATION_CATEGORIES},
            "category_scores": {c: 0.9 if flagged and c == "violence" else 0.0001
                                for c in MODERATION_CATEGORIES},
            "category_applied_input_types": {
                c: sorted(k for k in kinds if k == "text" or c in IMAGE_CATEGORIES)
                for c in MODERATION_CATEGORIES
            },
        })  # fmt: skip
    model = body.get("model") or "omni-moderation-latest"
    return _json({"id": "modr-" + str(time.time_ns()), "model": model, "results": results})


async def _completions(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    prompt = prompt_tokens(body["prompt"])
    pieces = [" This", " is", " a", " test", "."][: body.get("max_tokens") or 16]
    usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces),
             "total_tokens": prompt + len(pieces)}  # fmt: skip
    base = {"id": "cmpl-fake1", "object": "text_completion", "created": int(time.time()),
            "model": body["model"]}  # fmt: skip
    if not body.get("stream"):
        choice = {"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": "stop"}
        return _json({**base, "choices": [choice], "usage": usage})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i, piece in enumerate(pieces):
        finish = "stop" if i == len(pieces) - 1 else None
        choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
        await response.write(_event({**base, "choices": [choice]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(_event({**base, "choices": [], "usage": usage}))
    await response.write(b"data: [DONE]\n\n")
    return response


def _image_count(form: dict[str, Any]) -> int:
    """A multipart ``n``, checked as OpenAI checks it (1 to 10)."""
    raw = form.get("n") or "1"
    if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= MAX_IMAGES:
        raise _ApiError(400, f"Invalid value for 'n': {raw!r}. Expected 1 to {MAX_IMAGES}.",
                        param="n", code="invalid_value")  # fmt: skip
    return int(raw)


def _images(body: dict[str, Any], n: int) -> dict[str, Any]:
    b64 = body.get("response_format") == "b64_json" or body.get("model") == "gpt-image-1"
    item = ({"b64_json": base64.b64encode(PNG + b"fake").decode()} if b64
            else {"url": "https://images.example/fake.png"})  # fmt: skip
    if body.get("model") == "dall-e-3":
        item["revised_prompt"] = "A revised " + str(body.get("prompt"))
    answer: dict[str, Any] = {"created": int(time.time()), "data": [item] * n}
    if body.get("model") == "gpt-image-1":
        size = body.get("size") if body.get("size") not in (None, "auto") else "1024x1024"
        quality = body.get("quality") if body.get("quality") not in (None, "auto") else "medium"
        answer.update(size=size, quality=quality, background="opaque", output_format="png")
    return answer


async def _generations(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    return _json(_images(body, int(body.get("n") or 1)))


async def _edits(request: web.Request, form: dict[str, Any]) -> web.StreamResponse:
    images = form.get("image") or form.get("image[]")
    if not images or not form.get("prompt"):
        raise _ApiError(400, "Missing required parameter: 'image' or 'prompt'.")
    for image in images if isinstance(images, list) else [images]:
        if not image["data"].startswith(PNG):
            raise _ApiError(400, "Invalid image file.", param="image")
    return _json(_images(form, _image_count(form)))


async def _variations(request: web.Request, form: dict[str, Any]) -> web.StreamResponse:
    if not isinstance(form.get("image"), dict):
        raise _ApiError(400, "Missing required parameter: 'image'.", param="image")
    return _json(_images(form, _image_count(form)))


async def _speech(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    sse = body.get("stream_format") == "sse"
    content_type = "text/event-stream" if sse else "audio/mpeg"
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    for piece in FAKE_AUDIO:
        if sse:
            delta = {"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()}
            await response.write(_event(delta))
        else:
            await response.write(piece)
        await asyncio.sleep(0.01)  # audio arrives in pieces over time, as from OpenAI
    if sse:
        chars = len(body["input"])
        usage = {"input_tokens": chars, "output_tokens": 3, "total_tokens": chars + 3}
        await response.write(_event({"type": "speech.audio.done", "usage": usage}))
    await response.write_eof()
    return response


async def _transcribe(request: web.Request, form: dict[str, Any]) -> web.StreamResponse:
    file = form.get("file")
    if not isinstance(file, dict) or not form.get("model"):
        raise _ApiError(400, "Missing required parameter: 'file' or 'model'.")
    try:
        with wave.open(io.BytesIO(file["data"]), "rb") as audio:
            seconds = audio.getnframes() / audio.getframerate()
    except (wave.Error, EOFError, ZeroDivisionError) as exc:
        # This fake decodes only WAV; OpenAI answers an undecodable file with a 400 too.
        raise _ApiError(400, "Audio file might be corrupted or unsupported", param="file",
                        code="invalid_value") from exc  # fmt: skip
    text = "Hello from the fake transcriber."
    fmt = form.get("response_format") or "json"
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt in ("srt", "vtt"):
        stamp = f"00:00:00{',' if fmt == 'srt' else '.'}000 --> 00:00:0{int(seconds)}"
        head = "1\n" if fmt == "srt" else "WEBVTT\n\n"
        return web.Response(text=f"{head}{stamp}\n{text}\n\n", content_type="text/plain")
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text,
                   "tokens": [1, 2], "temperature": 0.0, "avg_logprob": -0.2,
                   "compression_ratio": 1.0, "no_speech_prob": 0.01}  # fmt: skip
        return _json({"task": "transcribe", "language": "english", "duration": seconds,
                      "text": text, "segments": [segment]})  # fmt: skip
    return _json({"text": text, "usage": {"type": "duration", "seconds": round(seconds)}})


async def _rerank(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    if not isinstance(body.get("query"), str) or not isinstance(body.get("documents"), list):
        raise _ApiError(400, "'query' and 'documents' are required.")
    query = set(body["query"].lower().split())
    scored = [(len(query & set(str(d).lower().split())) / (1 + len(query)), i, d)
              for i, d in enumerate(body["documents"])]  # fmt: skip
    scored.sort(key=lambda s: -s[0])
    results = [{"index": i, "relevance_score": round(score, 4), "document": {"text": d}}
               for score, i, d in scored[: body.get("top_n") or len(scored)]]  # fmt: skip
    usage = {"total_tokens": sum(words(str(d)) for d in body["documents"])}
    return _json({"model": body["model"], "usage": usage, "results": results})


def _json(obj: Any) -> web.Response:
    return _json_response(obj, {})


def _event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


HANDLERS = {
    "/v1/embeddings": _embeddings,
    "/v1/moderations": _moderations,
    "/v1/completions": _completions,
    "/v1/images/generations": _generations,
    "/v1/images/edits": _edits,
    "/v1/images/variations": _variations,
    "/v1/audio/speech": _speech,
    "/v1/audio/transcriptions": _transcribe,
    "/v1/audio/translations": _transcribe,
    "/v1/rerank": _rerank,
}
