"""Small media for tests: a real 1x1 PNG, and a real WAV tone."""

from __future__ import annotations

import base64
import io
import math
import struct
import wave

PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4"
    "DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
PNG = base64.b64decode(PNG_BASE64)


def wav_tone(seconds: float = 1.0, hz: float = 440.0, rate: int = 8000) -> bytes:
    """A WAV file a browser plays: a sine tone, 16-bit mono PCM."""
    frames = b"".join(
        struct.pack("<h", int(12_000 * math.sin(2 * math.pi * hz * n / rate)))
        for n in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(frames)
    return out.getvalue()
