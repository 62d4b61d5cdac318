"""A multipart upload as the gateway holds it: form fields in memory, files spooled to disk.

Files are never held whole in memory; each file part names the temporary file it was
written to, so that every attempt can stream it to an upstream from the start.
"""

from __future__ import annotations

import contextlib
import os
import wave
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FilePart:
    name: str
    """The form field, such as ``file`` or ``image[]``."""
    filename: str
    content_type: str
    path: str
    size: int


@dataclass(slots=True)
class Upload:
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def file(self, *names: str) -> FilePart | None:
        for part in self.files:
            if part.name in names:
                return part
        return None

    def replaced(self, name: str, value: str) -> Upload:
        """A copy with the field ``name`` set to ``value`` (added when absent)."""
        fields = [(k, v) for k, v in self.fields if k != name]
        fields.append((name, value))
        return Upload(fields, list(self.files))

    def discard(self) -> None:
        """Delete the spooled files."""
        for part in self.files:
            with contextlib.suppress(OSError):
                os.unlink(part.path)


def wav_seconds(path: str) -> float | None:
    """The duration of a WAV file from its header, or None when it is not a readable WAV."""
    try:
        with wave.open(path, "rb") as audio:
            rate = audio.getframerate()
            frames = audio.getnframes()
    except (wave.Error, EOFError, OSError):
        return None
    return frames / rate if rate > 0 else None
