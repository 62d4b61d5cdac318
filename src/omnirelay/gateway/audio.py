"""POST /v1/audio/speech (billed by characters of speech) and /v1/audio/transcriptions and
/translations (billed by seconds of audio in).

Speech is relayed as its bytes arrive, as raw audio or as ``stream_format=sse`` events.
A transcription's seconds come from the upstream when it reports them (``verbose_json``'s
``duration``, or ``usage.seconds``), else from the upload's WAV header, else from an upper
bound of the upload's length (the hold's too: at least 1,000 bytes per second, 8 kbit/s).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.op_checks import one_of, required_str
from omnirelay.gateway.operations import (
    JSON,
    Charged,
    Operation,
    OperationRunner,
    Reply,
    Streaming,
    StreamReply,
)
from omnirelay.gateway.pricing import Quote
from omnirelay.gateway.routing import Route
from omnirelay.gateway.uploads import check_audio, require_file
from omnirelay.providers.operations import SpeechProvider, TranscriptionProvider
from omnirelay.wire.errors import GatewayError, InvalidRequest, UpstreamError
from omnirelay.wire.uploads import Upload, wav_seconds
from omnirelay.wire.usage import Usage

SPEECH = "audio.speech"
TRANSCRIPTIONS = "audio.transcriptions"
TRANSLATIONS = "audio.translations"
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
STREAM_FORMATS = ("audio", "sse")
TEXT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MAX_SPEECH_CHARS = 4096
MIN_BYTES_PER_SECOND = 1000
READ_SIZE = 64 * 1024


class _SpeechMeter:
    """Speech costs its input's characters once any audio reached the client."""

    def __init__(self, cost: int) -> None:
        self._cost = cost
        self._sent = False

    def feed(self, chunk: bytes) -> None:
        self._sent = True

    def charge(self) -> tuple[int, Usage]:
        return (self._cost if self._sent else 0), Usage()

    def failure_tail(self, error: GatewayError) -> bytes:
        return b""  # audio bytes have no room for an error; the cut-off says it


class Audio:
    def __init__(self, runner: OperationRunner) -> None:
        self._runner = runner

    async def speech(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        model = required_str(body, "model")
        text = required_str(body, "input")
        required_str(body, "voice")
        if len(text) > MAX_SPEECH_CHARS:
            raise InvalidRequest(
                f"'input' is {len(text)} characters; at most {MAX_SPEECH_CHARS} are allowed.",
                param="input",
            )
        one_of(body.get("response_format"), SPEECH_FORMATS, "response_format")
        one_of(body.get("stream_format"), STREAM_FORMATS, "stream_format")

        async def attempt(route: Route, quote: Quote) -> Streaming:
            provider = self._runner.providers.provider(route.channel.type)
            if not isinstance(provider, SpeechProvider):
                raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve speech.")
            sent = {**body, **route.body_overrides} if route.body_overrides else body
            request = provider.speech_request(route.endpoint, sent, route.upstream_model)
            response = await self._runner.send(provider, request, route)
            meter = _SpeechMeter(quote.speech_chars(len(text)))
            return await self._runner.open_stream(response, _chunks(response), route, meter)

        operation = Operation(model, lambda q: q.speech_chars(len(text)), attempt, stream=True)
        return await self._runner.run(call, operation)

    async def transcribe(
        self, call: Call, upload: Upload, *, translate: bool
    ) -> Reply | StreamReply:
        fields = dict(upload.fields)
        model = required_str(fields, "model")
        part = require_file(upload.file("file"), "file")
        check_audio(part)
        one_of(fields.get("response_format"), TEXT_FORMATS, "response_format")
        if fields.get("stream") in ("true", "True", "1"):
            raise InvalidRequest(
                "Streamed transcriptions are not supported by this gateway yet; leave out "
                "'stream'.",
                param="stream",
            )
        measured = wav_seconds(part.path)
        bound = measured if measured is not None else math.ceil(part.size / MIN_BYTES_PER_SECOND)

        async def attempt(route: Route, quote: Quote) -> Charged:
            provider = self._runner.providers.provider(route.channel.type)
            if not isinstance(provider, TranscriptionProvider):
                raise UpstreamError(f"Channel type '{route.channel.type}' cannot transcribe.")
            request = provider.transcription_request(
                route.endpoint, upload, route.upstream_model, translate
            )
            response = await self._runner.send(provider, request, route)
            content_type = response.headers.get("Content-Type", JSON)
            payload = await self._runner.read(call, response)
            seconds = reported_seconds(payload, content_type)
            seconds = bound if seconds is None else min(seconds, bound)
            return Charged(Reply(payload, content_type), quote.audio_seconds(seconds))

        operation = Operation(model, lambda q: q.audio_seconds(bound), attempt)
        return await self._runner.run(call, operation)


def reported_seconds(payload: bytes, content_type: str) -> float | None:
    """The seconds of audio an upstream's JSON answer reports, if it does."""
    if not content_type.startswith(JSON):
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    for value in (data.get("duration"), usage.get("seconds") if isinstance(usage, dict) else None):
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_any():
        if chunk:
            yield chunk
