"""Images that a client gave by URL, fetched for upstreams that take them only inline.

The fetch itself is the SSRF-guarded client of ``providers.guarded``; this module decides
what to fetch (each distinct http(s) ``image_url`` of a chat body, at most ``max_images``),
what is acceptable (an image, at most ``max_bytes``), and turns a refusal into the
client's error (400), since the URL is theirs.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

from omnirelay.providers.guarded import (
    AddressCheck,
    FetchRefused,
    GuardedClient,
    public_address,
)
from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.media import data_url, is_remote


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    max_images: int = 16


class ImageRefused(InvalidRequest):
    code = "invalid_image_url"


class ImageFetcher:
    def __init__(
        self, limits: FetchLimits | None = None, allowed: AddressCheck = public_address
    ) -> None:
        self.limits = limits or FetchLimits()
        self._client = GuardedClient(
            timeout_s=self.limits.timeout_s,
            max_redirects=self.limits.max_redirects,
            allowed=allowed,
        )

    async def start(self) -> None:
        await self._client.start()

    async def close(self) -> None:
        await self._client.close()

    async def fetch(self, url: str) -> tuple[str, bytes]:
        """The image at ``url``: its media type and bytes."""
        try:
            fetched = await self._client.get(url, self.limits.max_bytes, _is_image, "an image")
        except FetchRefused as refused:
            raise ImageRefused(f"An image URL {refused}.") from refused
        return fetched.content_type, fetched.body


def _is_image(content_type: str) -> bool:
    return content_type.startswith("image/")


def needs_inline_images(provider: Any, endpoint: Any) -> bool:
    """Whether this provider, on this channel, takes images only inline."""
    check = getattr(provider, "needs_inline_images", None)
    return bool(check(endpoint)) if callable(check) else False


async def inline_images(body: dict[str, Any], fetcher: ImageFetcher) -> dict[str, Any]:
    """The body with every http(s) ``image_url`` replaced by a base64 ``data:`` URL.

    The body is not changed in place; messages without remote images are shared.
    """
    wanted: list[str] = []
    for message in body.get("messages") or ():
        for part in _parts(message):
            url = _image_url(part)
            if url is not None and is_remote(url) and url not in wanted:
                wanted.append(url)
    if not wanted:
        return body
    if len(wanted) > fetcher.limits.max_images:
        raise ImageRefused(f"At most {fetcher.limits.max_images} image URLs can be fetched.")
    fetched = await asyncio.gather(*(fetcher.fetch(url) for url in wanted))
    inline = {
        url: data_url(mime, base64.b64encode(data).decode())
        for url, (mime, data) in zip(wanted, fetched, strict=True)
    }
    messages = [_inlined(message, inline) for message in body["messages"]]
    return {**body, "messages": messages}


def _parts(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def _image_url(part: Any) -> str | None:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return url if isinstance(url, str) else None


def _inlined(message: Any, inline: dict[str, str]) -> Any:
    parts = _parts(message)
    if not any(_image_url(part) in inline for part in parts):
        return message
    replaced = []
    for part in parts:
        url = _image_url(part)
        if url in inline:
            image = part["image_url"] if isinstance(part["image_url"], dict) else {}
            part = {**part, "image_url": {**image, "url": inline[url]}}
        replaced.append(part)
    return {**message, "content": replaced}
