"""Inline media in chat messages: ``data:`` URLs and the image types upstreams accept."""

from __future__ import annotations

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` -> (mime, base64 data); None for anything else."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.lower().endswith(";base64"):
        return None
    mime = header[: -len(";base64")].strip().lower() or "application/octet-stream"
    return mime, data.strip()


def data_url(mime: str, data: str) -> str:
    return f"data:{mime};base64,{data}"


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))
