"""Checks of uploaded files, with the 400s OpenAI gives for a missing or wrong file."""

from __future__ import annotations

from omnirelay.wire.errors import InvalidRequest, MissingField
from omnirelay.wire.uploads import FilePart

IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
AUDIO_FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")


def require_file(part: FilePart | None, name: str) -> FilePart:
    if part is None:
        raise MissingField(
            f"Missing required parameter: '{name}'. Send it as a file in multipart/form-data.",
            param=name,
        )
    return part


def check_image(part: FilePart) -> None:
    """PNG, JPEG or WEBP, by its first bytes, as OpenAI accepts for edits and variations."""
    with open(part.path, "rb") as file:
        head = file.read(12)
    if any(head.startswith(magic) for magic in IMAGE_MAGIC):
        return
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return
    raise InvalidRequest(
        f"Invalid file '{part.filename}' for '{part.name}': unsupported image format. "
        "Supported formats are PNG, JPEG and WEBP.",
        param=part.name,
        code="invalid_image_format",
    )


def check_audio(part: FilePart) -> None:
    """One of the formats the transcription API reads, by the file's extension."""
    extension = part.filename.rsplit(".", 1)[-1].lower() if "." in part.filename else ""
    if extension not in AUDIO_FORMATS:
        raise InvalidRequest(
            f"Invalid file format for '{part.filename}'. Supported formats: "
            f"{AUDIO_FORMATS!r}".replace("'", '"')
            .replace("(", "[")
            .replace(")", "]"),
            param="file",
            code="invalid_value",
        )
