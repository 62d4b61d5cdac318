"""Wrong-typed input never makes the gateway fail: a clear 4xx in the endpoint's error shape.

For every JSON endpoint, a valid body has one field (at any depth: messages, content parts,
tools, stream options, ...) replaced with a value of another JSON type, or removed; random
JSON bodies are sent too. The JSON endpoints are OpenAI's (also under Azure's deployment
paths), Anthropic's, the Responses API, Google's Gemini API (``/v1beta/models/...``), and
the task families: OpenAI's videos, Midjourney (``/mj/...``), Suno, Kling, the unified
``/v1/video/generations`` and ``/task/doc`` and ``/task/3d``; ``/task/pic`` takes forms,
which are fuzzed field by field. For the upload endpoints, multipart bodies are broken at the
field level (wrong values, missing or misplaced files) and at the encoding level (wrong or
missing boundaries, truncation, bad part headers). No answer may be a 5xx, and every 4xx body
must be the path's error object: OpenAI's, Anthropic's on /v1/messages*, Google's on
/v1beta.

Everything runs against the one shared gateway, through channels of its own whose fake
upstreams serve every operation, so that bodies the gateway passes on go as deep as they
can; the tasks those bodies start are cancelled at the end.
"""

from __future__ import annotations

import copy
import io
import json
import os
import secrets
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.gateway import image_tasks
from omnirelay.gateway.requests import check_chat_request, parse_json_object
from omnirelay.providers.anthropic import AnthropicProvider
from omnirelay.providers.azure import AzureOpenAIProvider
from omnirelay.providers.base import ChatProvider, Endpoint
from omnirelay.providers.gemini import GeminiProvider
from omnirelay.wire.errors import GatewayError
from support.constants import UPSTREAM_KEY
from support.fake_kling import FakeKling
from support.fake_midjourney import FakeMidjourney
from support.fake_openai_more import FakeOpenAIMore
from support.fake_picwish import FakePicWish
from support.fake_suno import FakeSuno
from support.fake_tripo import FakeTripo
from support.fake_videos import FakeVideos
from support.gateway import Gateway
from support.media import PNG, PNG_BASE64

MODELS = ["gpt-4o", "text-embedding-3-small", "omni-moderation-latest", "dall-e-2", "dall-e-3",
          "gpt-image-1", "tts-1", "whisper-1", "rerank-v3.5"]  # fmt: skip
# OMNIRELAY_FUZZ_SCALE=20 runs twenty times the examples, for a deeper search by hand.
SCALE = int(os.environ.get("OMNIRELAY_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=40 * SCALE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DATA_URL = f"data:image/png;base64,{PNG_BASE64}"
DELETE = object()  # a "value" that removes the field


def _wav(seconds: float = 0.2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x01" * int(8000 * seconds))
    return buffer.getvalue()


# -- the valid bodies ----------------------------------------------------------------------

TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
TOOL = {"type": "function", "function": TIME}
CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": DATA_URL}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ],
    "tools": [TOOL],
    "tool_choice": "auto",
    "max_completion_tokens": 5,
    "n": 1,
    "temperature": 0.5,
    "user": "u1",
    "response_format": {"type": "text"},
}  # fmt: skip
# A streamed answer is cut past its max_tokens (gateway/output.py) as the gateway counts
# them (o200k); the fake echoes the prompt and counts words. A drawn 12-character word of
# rare characters is one word to the fake but up to ~48 tokens to o200k: the streamed
# bodies' caps leave it room, so what the fuzz finds is the gateway's answer, not that.
ROOMY = 64
CHAT_STREAM: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": ROOMY,
    "stream": True,
    "stream_options": {"include_usage": True},
}
COMPLETIONS: dict[str, Any] = {"model": "gpt-4o", "prompt": "Say hi", "max_tokens": 5, "n": 1,
                               "best_of": 1, "stream": False}  # fmt: skip
COMPLETIONS_STREAM: dict[str, Any] = {"model": "gpt-4o", "prompt": ["Say", "hi"], "stream": True,
                                      "stream_options": {"include_usage": True}}  # fmt: skip
EMBEDDINGS: dict[str, Any] = {"model": "text-embedding-3-small", "input": ["a b", "c"],
                              "encoding_format": "float", "dimensions": 8}  # fmt: skip
MODERATIONS: dict[str, Any] = {
    "model": "omni-moderation-latest",
    "input": [{"type": "text", "text": "hi"},
              {"type": "image_url", "image_url": {"url": DATA_URL}}],
}  # fmt: skip
IMAGES: dict[str, Any] = {"model": "dall-e-2", "prompt": "a cat", "n": 1, "size": "256x256",
                          "response_format": "url", "user": "u1"}  # fmt: skip
IMAGES_HD: dict[str, Any] = {"model": "dall-e-3", "prompt": "a cat", "size": "1024x1024",
                             "quality": "hd", "style": "vivid"}  # fmt: skip
SPEECH: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 1.0,
                          "response_format": "mp3", "stream_format": "audio"}  # fmt: skip
RERANK: dict[str, Any] = {"model": "rerank-v3.5", "query": "red", "documents": ["red", "blue"],
                          "top_n": 1, "return_documents": True}  # fmt: skip
MESSAGES: dict[str, Any] = {
    "model": "gpt-4o",
    "max_tokens": 5,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_BASE64}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": "JVBERi0="}}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "ok"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
             "content": [{"type": "text", "text": "noon"},
                         {"type": "image", "source": {"type": "base64",
                                                      "media_type": "image/png",
                                                      "data": PNG_BASE64}}]},
            {"type": "text", "text": "thanks"}]},
    ],
    "tools": [{"name": "get_time", "description": "Time.",
               "input_schema": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["###"],
    "temperature": 0.5,
    "top_p": 0.9,
    "metadata": {"user_id": "u1"},
    "output_config": {"format": {"type": "json_schema",
                                 "schema": {"type": "object", "properties": {}}}},
}  # fmt: skip
MESSAGES_STREAM: dict[str, Any] = {
    "model": "gpt-4o",
    "max_tokens": ROOMY,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "tool", "name": "get_time"},
}
COUNT_TOKENS = {k: v for k, v in MESSAGES.items() if k not in ("max_tokens", "stop_sequences")}
RESPONSES: dict[str, Any] = {
    "model": "gpt-4o",
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                     {"type": "input_image", "image_url": DATA_URL,
                                      "detail": "auto"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "noon"},
    ],
    "tools": [{"type": "function", "name": "get_time", "parameters": TIME["parameters"]}],
    "tool_choice": "auto",
    "max_output_tokens": 16,
    "temperature": 0.5,
    "text": {"format": {"type": "text"}},
    "metadata": {"a": "b"},
    "store": False,
}  # fmt: skip
RESPONSES_STREAM: dict[str, Any] = {"model": "gpt-4o", "input": "hi", "stream": True,
                                    "store": False}  # fmt: skip
GEMINI: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [{"text": "hi"},
                                   {"inlineData": {"mimeType": "image/png", "data": PNG_BASE64}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_time", "args": {"z": "utc"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_time",
                                                         "response": {"time": "noon"}}}]},
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [{"functionDeclarations": [{
        "name": "get_time", "description": "Time.",
        "parameters": {"type": "OBJECT", "properties": {
            "z": {"type": "STRING", "maxLength": "9", "enum": ["utc"]},
            "n": {"type": "ARRAY", "items": {"type": "INTEGER"}, "minItems": 0}}}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY",
                                             "allowedFunctionNames": ["get_time"]}},
    "generationConfig": {"maxOutputTokens": ROOMY, "temperature": 0.5, "topP": 0.9,
                         "stopSequences": ["###"], "candidateCount": 1,
                         "thinkingConfig": {"thinkingBudget": 0}},
}  # fmt: skip
GEMINI_JSON: dict[str, Any] = {
    "contents": [{"parts": [{"text": "hi"}]}],
    "generationConfig": {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": True}},
        "required": ["a"]}},
}  # fmt: skip
GEMINI_EMBED: dict[str, Any] = {
    "content": {"parts": [{"text": "a b"}, {"text": "c"}]},
    "outputDimensionality": 8,
    "taskType": "RETRIEVAL_QUERY",
}
GEMINI_BATCH: dict[str, Any] = {"requests": [
    {"model": "models/text-embedding-3-small", "content": {"parts": [{"text": "a"}]},
     "outputDimensionality": 8},
    {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8},
]}  # fmt: skip
GEMINI_PATH = "/v1beta/models/gpt-4o:"
AZURE_PATH = "/openai/deployments/{}/{}?api-version=2024-10-21"
MJ_IMAGE = f"data:image/png;base64,{PNG_BASE64}"
MJ_UNKNOWN = "mj_unknown"
VIDEO: dict[str, Any] = {"model": "sora-2", "prompt": "a cat", "seconds": "4",
                         "size": "720x1280"}  # fmt: skip
KLING: dict[str, Any] = {"model_name": "kling-v1", "prompt": "a fox", "negative_prompt": "rain",
                         "cfg_scale": 0.5, "mode": "std", "aspect_ratio": "16:9",
                         "duration": "5"}  # fmt: skip
FOLLOW_UP_3D = {"original_model_task_id": "t3d_unknown", "format": "FBX"}
PIC_SOURCES = {action: fields.source[1] for action, fields in image_tasks.ACTIONS.items()}
PIC_FORMS = {action: {source: "https://a.example/a"} for action, source in PIC_SOURCES.items()}
PIC_FORMS["background"]["prompt"] = "a beach"
PIC_FORMS["watermark"]["rectangles"] = '[{"x": 0, "y": 0, "width": 9, "height": 9}]'


@dataclass(frozen=True)
class JSONEndpoint:
    path: str
    body: dict[str, Any]
    extra: tuple[str, ...] = ()
    """Top-level fields the gateway reads that the valid body leaves out."""
    served: bool = True
    """The valid body is answered 2xx; else a 4xx (it names a task that is not there, or a
    document on the internet, which the tests do not reach)."""

    @property
    def shape(self) -> str:
        """Whose error object a 4xx carries."""
        if self.path.startswith("/v1/messages"):
            return "anthropic"
        return "google" if self.path.startswith("/v1beta/") else "openai"


JSON_ENDPOINTS = {
    "chat": JSONEndpoint("/v1/chat/completions", CHAT,
                         ("max_tokens", "stream", "stream_options", "functions")),
    "chat.stream": JSONEndpoint("/v1/chat/completions", CHAT_STREAM,
                                ("max_completion_tokens", "n", "tools")),
    "completions": JSONEndpoint("/v1/completions", COMPLETIONS, ("stream_options",)),
    "completions.stream": JSONEndpoint("/v1/completions", COMPLETIONS_STREAM,
                                       ("max_tokens", "n", "best_of")),
    "embeddings": JSONEndpoint("/v1/embeddings", EMBEDDINGS),
    "moderations": JSONEndpoint("/v1/moderations", MODERATIONS),
    "moderations.text": JSONEndpoint("/v1/moderations", {"input": "hello"}, ("model",)),
    "images.generations": JSONEndpoint("/v1/images/generations", IMAGES, ("quality",)),
    "images.generations.hd": JSONEndpoint("/v1/images/generations", IMAGES_HD, ("n",)),
    "audio.speech": JSONEndpoint("/v1/audio/speech", SPEECH),
    "rerank": JSONEndpoint("/v1/rerank", RERANK),
    "messages": JSONEndpoint("/v1/messages", MESSAGES, ("stream",)),
    "messages.stream": JSONEndpoint("/v1/messages", MESSAGES_STREAM, ("system", "stop_sequences")),
    "count_tokens": JSONEndpoint("/v1/messages/count_tokens", COUNT_TOKENS, ("max_tokens",)),
    "responses": JSONEndpoint("/v1/responses", RESPONSES,
                              ("stream", "previous_response_id", "include", "reasoning",
                               "parallel_tool_calls", "truncation", "instructions")),
    "responses.stream": JSONEndpoint("/v1/responses", RESPONSES_STREAM,
                                     ("tools", "text", "max_output_tokens")),
    "responses.input_tokens": JSONEndpoint("/v1/responses/input_tokens",
                                           {k: v for k, v in RESPONSES.items() if k != "store"}),
    "gemini.generateContent": JSONEndpoint(GEMINI_PATH + "generateContent", GEMINI,
                                           ("safetySettings", "cachedContent")),
    "gemini.json": JSONEndpoint(GEMINI_PATH + "generateContent", GEMINI_JSON,
                                ("systemInstruction", "tools", "toolConfig")),
    "gemini.streamGenerateContent": JSONEndpoint(
        GEMINI_PATH + "streamGenerateContent?alt=sse", GEMINI_JSON, ("systemInstruction",)),
    "gemini.countTokens": JSONEndpoint(GEMINI_PATH + "countTokens", GEMINI,
                                       ("generateContentRequest",)),
    "gemini.countTokens.request": JSONEndpoint(GEMINI_PATH + "countTokens",
                                               {"generateContentRequest": GEMINI}),
    "gemini.embedContent": JSONEndpoint(
        "/v1beta/models/text-embedding-3-small:embedContent", GEMINI_EMBED),
    "gemini.batchEmbedContents": JSONEndpoint(
        "/v1beta/models/text-embedding-3-small:batchEmbedContents", GEMINI_BATCH),
    "azure.chat": JSONEndpoint(AZURE_PATH.format("gpt-4o", "chat/completions"), CHAT,
                               ("max_tokens", "stream", "stream_options")),
    "azure.completions": JSONEndpoint(AZURE_PATH.format("gpt-4o", "completions"), COMPLETIONS),
    "azure.embeddings": JSONEndpoint(
        AZURE_PATH.format("text-embedding-3-small", "embeddings"), EMBEDDINGS),
    "azure.images": JSONEndpoint(AZURE_PATH.format("dall-e-2", "images/generations"), IMAGES),
    "azure.speech": JSONEndpoint(AZURE_PATH.format("tts-1", "audio/speech"), SPEECH),
    "videos": JSONEndpoint("/v1/videos", VIDEO),
    "videos.remix": JSONEndpoint("/v1/videos/video_unknown/remix", {"prompt": "a dog"},
                                 served=False),
    "mj.imagine": JSONEndpoint("/mj/submit/imagine", {"prompt": "a cat", "base64Array": [MJ_IMAGE],
                                                      "state": "s1"}, ("notifyHook", "botType")),
    "mj.action": JSONEndpoint("/mj/submit/action", {"customId": "MJ::JOB::upsample::1::x",
                                                    "taskId": MJ_UNKNOWN}, served=False),
    "mj.change": JSONEndpoint("/mj/submit/change", {"action": "UPSCALE", "index": 1,
                                                    "taskId": MJ_UNKNOWN}, served=False),
    "mj.simple-change": JSONEndpoint("/mj/submit/simple-change",
                                     {"content": f"{MJ_UNKNOWN} U1"}, served=False),
    "mj.blend": JSONEndpoint("/mj/submit/blend", {"base64Array": [MJ_IMAGE, MJ_IMAGE],
                                                  "dimensions": "SQUARE"}),
    "mj.describe": JSONEndpoint("/mj/submit/describe", {"base64": MJ_IMAGE}),
    "mj.modal": JSONEndpoint("/mj/submit/modal", {"taskId": MJ_UNKNOWN, "prompt": "a cat",
                                                  "maskBase64": MJ_IMAGE}, served=False),
    "mj.shorten": JSONEndpoint("/mj/submit/shorten", {"prompt": "a cat in a hat"}),
    "mj.swap": JSONEndpoint("/mj/insight-face/swap", {"sourceBase64": MJ_IMAGE,
                                                      "targetBase64": MJ_IMAGE}),
    "mj.list": JSONEndpoint("/mj/task/list-by-condition", {"ids": [MJ_UNKNOWN]}),
    "suno.music": JSONEndpoint("/suno/submit/music", {
        "gpt_description_prompt": "a song about the sea", "make_instrumental": False,
        "mv": "chirp-v3-5"}, ("prompt", "tags", "title", "task_id", "continue_clip_id",
                              "continue_at")),
    "suno.lyrics": JSONEndpoint("/suno/submit/lyrics", {"prompt": "a song"}),
    "suno.fetch": JSONEndpoint("/suno/fetch", {"ids": ["suno_unknown"]}),
    "kling.text2video": JSONEndpoint("/kling/v1/videos/text2video", KLING,
                                     ("callback_url", "camera_control", "external_task_id")),
    "kling.image2video": JSONEndpoint("/kling/v1/videos/image2video", {
        "image": "https://images.example/a.png", "prompt": "it moves", "mode": "pro",
        "duration": 10}, ("image_tail", "model_name")),
    "video.generations.kling": JSONEndpoint("/v1/video/generations", {
        "model": "kling-v1", "prompt": "a cat", "duration": 5, "width": 1280, "height": 720},
        ("image",)),
    "video.generations.sora": JSONEndpoint("/v1/video/generations", {
        "model": "sora-2", "prompt": "a cat", "duration": 4, "width": 720, "height": 1280}),
    "task.doc": JSONEndpoint("/task/doc/pdf-parse", {"url": "https://docs.example/a.pdf"},
                             served=False),
    "task.3d.text_to_model": JSONEndpoint("/task/3d/text_to_model", {
        "prompt": "a cat", "negative_prompt": "a dog", "model_version": "v2.5-20250123",
        "texture": True, "pbr": False, "face_limit": 1000}),
    "task.3d.image_to_model": JSONEndpoint("/task/3d/image_to_model", {
        "file": {"type": "png", "url": "https://a.example/a.png"}}),
    "task.3d.multiview_to_model": JSONEndpoint("/task/3d/multiview_to_model", {
        "files": [{"type": "png", "url": "https://a.example/a.png"}]}),
    "task.3d.convert_model": JSONEndpoint("/task/3d/convert_model", FOLLOW_UP_3D, served=False),
    "task.3d.texture_model": JSONEndpoint("/task/3d/texture_model", FOLLOW_UP_3D, served=False),
}  # fmt: skip


def field_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index in ``value``, at every depth."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        path = (*prefix, key)
        found.append(path)
        if isinstance(child, dict | list) and child:
            found.extend(field_paths(child, path))
    return found


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    parent: Any = out
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


# -- values of the wrong type --------------------------------------------------------------


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.integers(min_value=2**63 - 1, max_value=2**64 - 1),  # JSON's big integers
    st.integers(min_value=2**64, max_value=2**80),  # past 64 bits: parsed as floats
    st.integers(max_value=-(2**63)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
WRONG = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
    st.builds(_nested, st.integers(min_value=2, max_value=400), SCALARS),
    st.just(DELETE),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


# -- the gateway ---------------------------------------------------------------------------


@dataclass
class Target:
    gateway: Gateway
    fake: FakeOpenAIMore
    client: httpx.Client
    key: str
    key_id: int

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", "anthropic-version": "2023-06-01"}
        if path.startswith("/v1beta/"):
            headers["x-goog-api-key"] = self.key
        headers.update(kwargs.pop("headers", {}))
        return self.client.post(self.gateway.url + path, headers=headers, **kwargs)

    def post_json(self, path: str, body: Any) -> httpx.Response:
        raw = json.dumps(body).encode()
        return self.post(path, content=raw, headers={"Content-Type": "application/json"})

    def check(self, response: httpx.Response, shape: str = "openai") -> dict[str, Any]:
        """Not a 5xx; a 4xx carries the endpoint's error shape. Returns the error object."""
        sent = response.request.content[:300]
        assert response.status_code < 500, (
            f"{response.status_code} {response.text[:500]} <- {sent!r}\n"
            f"failed calls so far: {self.failures()}"
        )
        if response.status_code < 400:
            return {}
        return error_of(response.json(), shape)

    def failures(self) -> list[Any]:
        """The logged calls of this key that failed on the gateway's or upstream's side (a
        channel that cools down after them makes later calls fail too)."""
        page = self.gateway.admin("GET", f"/admin/logs?key_id={self.key_id}&limit=500").json()
        return [(row["endpoint"], row["status"], row["error"], row["attempts"])
                for row in page["data"] if row["status"] >= 500]  # fmt: skip


# The task channels and their prices: the prices are those of the task families' own test
# modules, which set them again for themselves.
KLING_KEYS = ("ak_fuzz", "sk_fuzz_" + "0" * 24)
TASK_PRICES: dict[str, dict[str, Any]] = {
    "midjourney": {"imagine": "0.05", "upscale": "0.02", "custom_zoom": "0.03", "describe": "0.01",
                   "blend": "0.04", "shorten": "0.01", "swap_face": "0.02", "variation": "0.04",
                   "reroll": "0.04"},
    "suno": {"music": "0.04", "lyrics": "0.005"},
    "picwish": {action: "0.02" for action in ("segmentation", "scale", "background", "ocr",
                                              "watermark_auto", "watermark", "idphoto",
                                              "colorization")},
    "tripo3d": {"text_to_model": "0.20", "image_to_model": "0.30", "texture_model": "0.10",
                "convert_model": "0.05", "multiview_to_model": "0.30"},
}  # fmt: skip
KLING_PRICE = {"input_usd_per_m": "0", "output_usd_per_m": "0",
               "video_usd_per_second": {"std": "0.028", "pro": "0.098"}}  # fmt: skip


@pytest.fixture(scope="module")
def target(gateway: Gateway) -> Iterator[Target]:
    kling = FakeKling(*KLING_KEYS)
    with (
        FakeOpenAIMore(api_key=UPSTREAM_KEY) as fake,
        FakeVideos(UPSTREAM_KEY) as videos,
        FakeMidjourney(UPSTREAM_KEY) as midjourney,
        FakeSuno(UPSTREAM_KEY) as suno,
        FakePicWish(UPSTREAM_KEY) as picwish,
        FakeTripo(UPSTREAM_KEY) as tripo,
        kling,
        httpx.Client(timeout=30) as client,
    ):
        group = "fuzz-" + secrets.token_hex(4)
        upstreams = [
            ("openai", fake.base_url, UPSTREAM_KEY, MODELS),
            ("openai", videos.base_url, UPSTREAM_KEY, ["sora-2"]),
            ("midjourney", midjourney.url, UPSTREAM_KEY, ["midjourney"]),
            ("suno", suno.url, UPSTREAM_KEY, ["suno"]),
            ("picwish", picwish.base_url, UPSTREAM_KEY, ["picwish"]),
            ("tripo", tripo.base_url, UPSTREAM_KEY, ["tripo3d"]),
            ("kling", kling.base_url, "|".join(KLING_KEYS), ["kling-v1"]),
        ]
        channels = [
            gateway.add_channel(name=f"{group}-{n}", type=kind, base_url=url, api_key=secret,
                                models=models, group=group)
            for n, (kind, url, secret, models) in enumerate(upstreams)
        ]  # fmt: skip
        prices = {
            model: {"input_usd_per_m": "0", "output_usd_per_m": "0", "task_actions_usd": actions}
            for model, actions in TASK_PRICES.items()
        }
        prices["kling-v1"] = KLING_PRICE
        for model, price in prices.items():
            assert gateway.admin("PUT", f"/admin/prices/{model}", price).status_code == 200
        key = gateway.create_key(name=group, group=group)
        found = Target(gateway, fake, client, key["key"], key["id"])
        try:
            for name, endpoint in JSON_ENDPOINTS.items():  # each valid body is served
                answer = found.post_json(endpoint.path, endpoint.body)
                if endpoint.served:
                    assert answer.status_code == 200, f"{name}: {answer.text}"
                else:
                    assert 400 <= answer.status_code < 500, f"{name}: {answer.text}"
            for action, form in PIC_FORMS.items():
                answer = found.post(f"/task/pic/{action}", data=form)
                assert answer.status_code == 200, f"{action}: {answer.text}"
            yield found
        finally:
            _cancel_tasks(gateway, key["id"])
            for channel in channels:
                gateway.admin("DELETE", f"/admin/channels/{channel['id']}")
            for model in prices:
                gateway.admin("DELETE", f"/admin/prices/{model}")


def _cancel_tasks(gateway: Gateway, key_id: int) -> None:
    """The tasks the fuzzing started end here, before their fakes stop answering polls
    (a task that ends meanwhile refuses its cancel, and is not listed again)."""
    for _ in range(20):
        active = [
            row
            for state in ("submitting", "queued", "running")
            for row in gateway.admin(
                "GET", f"/admin/tasks?key_id={key_id}&state={state}&limit=500"
            ).json()["data"]
        ]
        if not active:
            return
        for row in active:
            gateway.admin("POST", f"/admin/tasks/{row['id']}/cancel")
    raise AssertionError(f"tasks of key {key_id} still running after 20 rounds of cancels")


def error_of(body: Any, shape: str) -> dict[str, Any]:
    """The error object of a 4xx body, which must have the endpoint's error shape."""
    if shape == "anthropic":
        assert set(body) == {"type", "error", "request_id"}, body
        assert body["type"] == "error"
        error = body["error"]
        assert set(error) == {"type", "message"}, body
    elif shape == "google":
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"code", "message", "status"}, body
        assert isinstance(error["code"], int) and 400 <= error["code"] < 500, body
        assert isinstance(error["status"], str) and error["status"].isupper(), body
        assert isinstance(error["message"], str) and error["message"], body
        return dict(error)
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["param"] is None or isinstance(error["param"], str)
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    return dict(error)


# -- known cases: a 400 that names the field -----------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/images/generations", {**IMAGES, "model": 7}, "model"),
        ("/v1/images/generations", {**IMAGES, "size": 256}, "size"),
        ("/v1/images/generations", {**IMAGES_HD, "quality": ["hd"]}, "quality"),
        ("/v1/chat/completions", {**CHAT, "tools": {"type": "function"}}, "tools"),
        (
            "/v1/chat/completions",
            replaced(CHAT, ("messages", 2, "tool_calls"), 5),
            "messages[2].tool_calls",
        ),
        ("/v1/chat/completions", {**CHAT, "stop": 5}, "stop"),
        (
            "/v1/chat/completions",
            {**CHAT, "response_format": {"type": "json_schema", "json_schema": "out"}},
            "response_format.json_schema",
        ),
        ("/v1/completions", {**COMPLETIONS, "stream": "yes"}, "stream"),
        ("/v1/audio/speech", {**SPEECH, "speed": "fast"}, "speed"),
        ("/v1/moderations", {"input": None}, "input"),
        ("/v1/rerank", {**RERANK, "documents": "red"}, "documents"),
    ],
)
def test_a_wrong_type_is_a_400_naming_the_field(
    target: Target, path: str, body: dict[str, Any], field: str
) -> None:
    error = target.check(target.post_json(path, body))
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field or f"'{field}'" in error["message"], error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**MESSAGES, "tools": 5}, "tools"),
        ({**MESSAGES, "tools": [5]}, "tools.0"),
        ({**MESSAGES, "system": 5}, "system"),
        ({**MESSAGES, "tool_choice": "auto"}, "tool_choice"),
        ({**MESSAGES, "stop_sequences": 3}, "stop_sequences"),
        ({**MESSAGES, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
         "messages.0.content.0"),
    ],
)  # fmt: skip
def test_messages_wrong_types_are_anthropic_400s_naming_the_field(
    target: Target, body: dict[str, Any], field: str
) -> None:
    response = target.post_json("/v1/messages", body)
    error = target.check(response, "anthropic")
    assert response.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(field), error


# -- fuzzing the JSON endpoints ------------------------------------------------------------


@pytest.mark.parametrize("name", list(JSON_ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_one_field_of_the_wrong_type(target: Target, name: str, data: st.DataObject) -> None:
    endpoint = JSON_ENDPOINTS[name]
    paths = field_paths(endpoint.body) + [(extra,) for extra in endpoint.extra]
    path = data.draw(st.sampled_from(paths), label="path")
    value = data.draw(WRONG, label="value")
    if value is DELETE and path in [(extra,) for extra in endpoint.extra]:
        value = None
    body = replaced(endpoint.body, path, value)
    target.check(target.post_json(endpoint.path, body), endpoint.shape)


@pytest.mark.parametrize("name", list(JSON_ENDPOINTS))
@settings(FUZZ, max_examples=20 * SCALE)
@given(data=st.data())
def test_random_json_bodies(target: Target, name: str, data: st.DataObject) -> None:
    endpoint = JSON_ENDPOINTS[name]
    names = [*endpoint.body, *endpoint.extra]
    body = data.draw(
        st.one_of(
            JSON_VALUES,
            st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=len(names)),
            st.fixed_dictionaries(
                {},
                optional={key: st.one_of(st.just(value), JSON_VALUES)
                          for key, value in endpoint.body.items()},
            ),
        ),
        label="body",
    )  # fmt: skip
    target.check(target.post_json(endpoint.path, body), endpoint.shape)


@pytest.mark.parametrize(
    "name", ["chat", "messages", "embeddings", "responses", "gemini.generateContent",
             "gemini.embedContent", "azure.chat", "videos", "mj.imagine", "suno.music",
             "kling.text2video", "video.generations.kling", "task.3d.text_to_model"],
)  # fmt: skip
@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"null", b"[]", b'"text"', b"12", b"{", b'{"model": "gpt-4o",}',
     b"[" * 5000 + b"]" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000, b"\xff\xfe{}",
     b'{"model": NaN}', b'{"model": "gpt-4o", "n": 1e999}'],
)  # fmt: skip
def test_bodies_that_are_not_one_json_object(target: Target, name: str, raw: bytes) -> None:
    endpoint = JSON_ENDPOINTS[name]
    response = target.post(endpoint.path, content=raw, headers={"Content-Type": "application/json"})
    target.check(response, endpoint.shape)
    assert response.status_code == 400


CHAT_FULL: dict[str, Any] = {
    **CHAT,
    "messages": [*CHAT["messages"], {"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}]}],
    "tool_choice": {"type": "function", "function": {"name": "get_time"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {
        "type": "object", "properties": {"a": {"type": ["string", "null"]}}}}},
    "stop": ["###"],
    "top_p": 0.5,
    "seed": 3,
    "parallel_tool_calls": False,
}  # fmt: skip
TRANSLATORS: dict[str, ChatProvider] = {
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
    "azure": AzureOpenAIProvider(),
}


def _translate(name: str, raw: bytes) -> None:
    """What the relay does with a chat body on a channel of another dialect, up to the
    request it sends; a GatewayError must be a 4xx."""
    try:
        body = parse_json_object(raw)
        check_chat_request(body)
        endpoint = Endpoint("https://upstream.example/v1", "sk-upstream")
        TRANSLATORS[name].chat_request(endpoint, body, "m", body.get("stream") is True)
    except GatewayError as error:
        assert 400 <= error.status < 500, error


@pytest.mark.parametrize("name", list(TRANSLATORS))
@pytest.mark.parametrize(
    "body",
    [
        replaced(CHAT, ("messages", 2, "tool_calls"), 5),
        {**CHAT, "stop": 5},
        {**CHAT, "response_format": {"type": "json_schema", "json_schema": "out"}},
    ],
)
def test_translators_known_cases(name: str, body: dict[str, Any]) -> None:
    _translate(name, json.dumps(body).encode())


@pytest.mark.parametrize("name", list(TRANSLATORS))
@pytest.mark.parametrize("path", [("stop", 0), ("tools", 0, "function", "parameters")])
def test_the_deepest_body_accepted_still_translates(name: str, path: tuple[Any, ...]) -> None:
    def body(depth: int) -> bytes:
        return json.dumps(replaced(CHAT_FULL, path, _nested(depth, "x"))).encode()

    def accepted(depth: int) -> bool:
        try:
            parse_json_object(body(depth))
        except GatewayError:
            return False
        return True

    deepest = max(depth for depth in range(200, 300) if accepted(depth))
    _translate(name, body(deepest))


@pytest.mark.parametrize("name", list(TRANSLATORS))
@settings(FUZZ, max_examples=150 * SCALE)
@given(data=st.data())
def test_translators_take_any_chat_body_the_gateway_accepts(name: str, data: st.DataObject) -> None:
    """A chat body that passes the gateway's checks never crashes the translation for
    another dialect (which would be a 500); a GatewayError is the translator's 4xx."""
    base = data.draw(st.sampled_from([CHAT, CHAT_STREAM, CHAT_FULL]), label="body")
    path = data.draw(st.sampled_from(field_paths(base)), label="path")
    _translate(name, json.dumps(replaced(base, path, data.draw(WRONG, label="value"))).encode())


# -- fuzzing the forms of /task/pic ---------------------------------------------------------


@pytest.mark.parametrize("action", list(PIC_FORMS))
@settings(FUZZ, max_examples=15 * SCALE)
@given(data=st.data())
def test_broken_pic_forms(target: Target, action: str, data: st.DataObject) -> None:
    """A form's fields, each a string: one of them (the path's own, or the gateway's) of a
    wrong value, dropped or sent twice; as urlencoded or as multipart."""
    fields = image_tasks.ACTIONS[action]
    names = sorted({*PIC_FORMS[action], *fields.choices, *fields.texts, *fields.source,
                    *image_tasks.GATEWAY_FIELDS})  # fmt: skip
    pairs = list(PIC_FORMS[action].items())
    name = data.draw(st.sampled_from(names), label="field")
    how = data.draw(st.sampled_from(["value", "drop", "twice"]), label="how")
    # sync=1 would hold the answer until the task ends: every other value is fuzzed.
    value = data.draw(TEXT.filter(lambda v: name != "sync" or v != "1"), label="value")
    if how != "twice":
        pairs = [(k, v) for k, v in pairs if k != name]
    if how != "drop":
        pairs.append((name, value))
    if data.draw(st.booleans(), label="multipart"):
        boundary = "b" + secrets.token_hex(8)
        body = encode([Part(k, v.encode()) for k, v in pairs], boundary)
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        body, content_type = urlencode(pairs).encode(), "application/x-www-form-urlencoded"
    target.check(target.post(f"/task/pic/{action}", content=body,
                             headers={"Content-Type": content_type}))  # fmt: skip


# -- fuzzing the uploads -------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    name: str | None
    data: bytes
    filename: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UploadEndpoint:
    path: str
    parts: tuple[Part, ...]


IMAGE_PART = Part("image", PNG + b"pixels", "a.png", (("Content-Type", "image/png"),))
AUDIO_PART = Part("file", _wav(), "a.wav", (("Content-Type", "audio/wav"),))
UPLOADS = {
    "images.edits": UploadEndpoint("/v1/images/edits", (
        Part("model", b"dall-e-2"), Part("prompt", b"a hat"), Part("n", b"1"),
        Part("size", b"256x256"), Part("response_format", b"url"), IMAGE_PART,
        Part("mask", PNG, "m.png", (("Content-Type", "image/png"),)))),
    "images.variations": UploadEndpoint("/v1/images/variations", (
        Part("model", b"dall-e-2"), Part("n", b"1"), Part("size", b"256x256"), IMAGE_PART)),
    "audio.transcriptions": UploadEndpoint("/v1/audio/transcriptions", (
        Part("model", b"whisper-1"), Part("response_format", b"json"), Part("language", b"en"),
        Part("temperature", b"0"), AUDIO_PART)),
    "audio.translations": UploadEndpoint("/v1/audio/translations", (
        Part("model", b"whisper-1"), Part("response_format", b"text"), AUDIO_PART)),
}  # fmt: skip


def encode(parts: list[Part], boundary: str) -> bytes:
    out = b""
    for part in parts:
        disposition = "form-data"
        if part.name is not None:
            disposition += f'; name="{part.name}"'
        if part.filename is not None:
            disposition += f'; filename="{part.filename}"'
        head = [("Content-Disposition", disposition), *part.headers]
        lines = "".join(f"{k}: {v}\r\n" for k, v in head)
        out += f"--{boundary}\r\n{lines}\r\n".encode() + part.data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "1.5", "true", "null", "[]", "{}", "99999999999999999999",
                     "auto", "9" * 400]),
)  # fmt: skip
BYTES = st.one_of(st.binary(max_size=64), TEXT.map(str.encode))
BAD_HEADERS = st.sampled_from(
    [
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Transfer-Encoding", "quoted-printable"),
        ("Content-Transfer-Encoding", "x-unknown"),
        ("Content-Encoding", "gzip"),
        ("Content-Encoding", "deflate"),
        ("Content-Encoding", "br"),
        ("Content-Encoding", "x-unknown"),
        ("Content-Type", "text/plain; charset=x-unknown"),
        ("Content-Type", "application/json"),
        ("Content-Length", "3"),
    ]
)


@st.composite
def broken_parts(draw: st.DrawFn, parts: tuple[Part, ...]) -> list[Part]:
    """The valid parts with one of them broken, dropped, retyped or doubled."""
    out = list(parts)
    index = draw(st.integers(min_value=0, max_value=len(out) - 1))
    part = out[index]
    how = draw(st.sampled_from(["value", "drop", "as_file", "as_field", "filename", "header",
                                "no_name", "twice", "extra"]))  # fmt: skip
    if how == "value":
        out[index] = Part(part.name, draw(BYTES), part.filename, part.headers)
    elif how == "drop":
        del out[index]
    elif how == "as_file":
        out[index] = Part(part.name, part.data, draw(st.text(max_size=12)), part.headers)
    elif how == "as_field":
        out[index] = Part(part.name, part.data)
    elif how == "filename":
        name = draw(st.one_of(st.text(max_size=12), st.sampled_from(["a", ".wav", "a.WAV", "a."])))
        out[index] = Part(part.name, part.data, name, part.headers)
    elif how == "header":
        out[index] = Part(part.name, part.data, part.filename, (*part.headers, draw(BAD_HEADERS)))
    elif how == "no_name":
        out[index] = Part(None, part.data, part.filename, part.headers)
    elif how == "twice":
        out.insert(index, Part(part.name, draw(BYTES), part.filename, part.headers))
    else:
        out.append(Part(draw(st.text(min_size=1, max_size=8).filter(lambda s: '"' not in s)),
                        draw(BYTES), draw(st.none() | st.just("x.bin"))))  # fmt: skip
    return out


@st.composite
def multipart_bodies(draw: st.DrawFn, parts: tuple[Part, ...]) -> tuple[bytes, str]:
    """A body and its Content-Type, broken in its parts or in its encoding."""
    boundary = "b" + secrets.token_hex(8)
    chosen = draw(broken_parts(parts)) if draw(st.booleans()) else list(parts)
    body = encode(chosen, boundary)
    content_type = f"multipart/form-data; boundary={boundary}"
    how = draw(st.sampled_from(["parts", "truncate", "boundary", "no_boundary", "garbage",
                                "empty", "no_closing", "bare_lf"]))  # fmt: skip
    if how == "truncate":
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    elif how == "boundary":
        content_type = f"multipart/form-data; boundary={draw(st.sampled_from(['x', 'b' * 80]))}"
    elif how == "no_boundary":
        content_type = "multipart/form-data"
    elif how == "garbage":
        body = draw(st.binary(max_size=200))
    elif how == "empty":
        body = b""
    elif how == "no_closing":
        body = body[: -len(f"--{boundary}--\r\n")]
    elif how == "bare_lf":
        body = body.replace(b"\r\n", b"\n")
    return body, content_type


@pytest.mark.parametrize("name", list(UPLOADS))
@settings(FUZZ, max_examples=50 * SCALE)
@given(data=st.data())
def test_broken_multipart_bodies(target: Target, name: str, data: st.DataObject) -> None:
    endpoint = UPLOADS[name]
    body, content_type = data.draw(multipart_bodies(endpoint.parts), label="multipart")
    response = target.post(endpoint.path, content=body, headers={"Content-Type": content_type})
    target.check(response)


@pytest.mark.parametrize("name", list(UPLOADS))
def test_the_valid_uploads_are_served(target: Target, name: str) -> None:
    endpoint = UPLOADS[name]
    boundary = "b" + secrets.token_hex(8)
    response = target.post(
        endpoint.path,
        content=encode(list(endpoint.parts), boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", list(UPLOADS))
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\n--x--\r\n"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
        ("multipart/form-data; boundary=x", b"not multipart at all"),
        ("multipart/form-data; boundary=x",
         b'--x\r\nContent-Disposition: form-data; name="model"\r\n'
         b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--x--\r\n"),
        ("multipart/form-data; boundary=x",
         b'--x\r\nContent-Disposition: form-data; name="model"\r\n'
         b"Content-Encoding: gzip\r\n\r\nnot gzip\r\n--x--\r\n"),
        ("application/json", b'{"model": "whisper-1"}'),
    ],
)  # fmt: skip
def test_malformed_multipart_is_a_400(
    target: Target, name: str, content_type: str, body: bytes
) -> None:
    response = target.post(UPLOADS[name].path, content=body, headers={"Content-Type": content_type})
    error = target.check(response)
    assert response.status_code == 400, response.text
    assert error["type"] == "invalid_request_error"
