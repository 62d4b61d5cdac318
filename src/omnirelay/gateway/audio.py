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

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.op_checks import one_of, required_str
from omnirelay.gateway.operation import (
    JSON,
    Attempt,
    Charged,
    Operation,
    Reply,
    Streaming,
    StreamReply,
)
from omnirelay.gateway.uploads import check_audio, require_file
from omnirelay.providers.http import UpstreamResponse
from omnirelay.providers.operations import SpeechProvider, TranscriptionProvider
from omnirelay.wire.errors import GatewayError, InvalidRequest
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


class SpeechStream:
    """Speech audio relayed as it arrives; it costs its input's characters once any audio
    reached the client."""

    def __init__(self, response: UpstreamResponse, cost: int) -> None:
        self._response = response
        self._cost = cost
        self._sent = False
        self.content_type = response.content_type
        self.finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.chunks():
            self._sent = True
            yield chunk

    def cost_so_far(self) -> int:
        return self._cost if self._sent else 0

    def charge(self) -> tuple[int, Usage]:
        return self.cost_so_far(), Usage()

    def failure_tail(self, error: GatewayError) -> bytes:
        return b""  # audio bytes have no room for an error; the cut-off says it

    def close(self) -> None:
        self._response.close()


class Audio:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    async def speech(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        return await self._kit.pipeline.run(call, self.speech_operation(body))

    def speech_operation(self, body: dict[str, Any]) -> Operation:
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

        async def attempt(attempt: Attempt) -> Streaming:
            kit, route = self._kit, attempt.route
            provider = kit.provider(route, SpeechProvider, "speech")
            sent = {**body, **route.body_overrides} if route.body_overrides else body
            request = provider.speech_request(route.endpoint, sent, route.upstream_model)
            response = await kit.upstream.send(provider, request, route)
            source = SpeechStream(response, attempt.quote.speech_chars(len(text)))
            return await kit.upstream.open(source, route)

        return Operation(model, lambda q: q.speech_chars(len(text)), attempt, stream=True)

    async def transcribe(
        self, call: Call, upload: Upload, *, translate: bool
    ) -> Reply | StreamReply:
        return await self._kit.pipeline.run(call, self.transcription(upload, translate))

    def transcription(self, upload: Upload, translate: bool) -> Operation:
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

        async def attempt(attempt: Attempt) -> Charged:
            kit, route = self._kit, attempt.route
            provider = kit.provider(route, TranscriptionProvider, "transcriptions")
            request = provider.transcription_request(
                route.endpoint, upload, route.upstream_model, translate
            )
            response = await kit.upstream.send(provider, request, route)
            content_type = response.headers.get("Content-Type", JSON)
            payload = await kit.upstream.read(attempt.call, response)
            seconds = reported_seconds(payload, content_type)
            seconds = bound if seconds is None else min(seconds, bound)
            return Charged(Reply(payload, content_type), attempt.quote.audio_seconds(seconds))

        return Operation(model, lambda q: q.audio_seconds(bound), attempt)


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
