"""OpenAI-compatible vendors as data: ``data/presets.json`` names each one's base URL, auth
style and quirks. A preset is a channel type; a channel's ``options`` may override any quirk.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

AUTH_STYLES = ("bearer", "api-key", "none")


@dataclass(frozen=True, slots=True)
class Quirks:
    """How a vendor departs from OpenAI's own API."""

    auth: str = "bearer"
    stream_usage: bool = True
    """Whether ``stream_options.include_usage`` may be sent."""
    rename: dict[str, str] = field(default_factory=dict)
    """Request fields the vendor knows under another name."""
    copy: dict[str, str] = field(default_factory=dict)
    """Request fields also sent under a second name, for vendors (or versions of them) that
    know only the second one; the second name's own value wins when both are given."""
    drop: tuple[str, ...] = ()
    """Request fields the vendor refuses."""
    inline_images: bool = False
    """The vendor takes images only as base64 ``data:`` URLs."""
    chat_path: str = "/chat/completions"

    @property
    def plain(self) -> bool:
        return self == PLAIN

    def with_options(self, options: dict[str, Any]) -> Quirks:
        """These quirks with a channel's own overrides (``options``), if it has any."""
        if not any(name in options for name in OPTION_NAMES):
            return self
        return Quirks(
            auth=str(options.get("auth", self.auth)),
            stream_usage=bool(options.get("stream_usage", self.stream_usage)),
            rename={**self.rename, **dict(options.get("rename") or {})},
            copy={**self.copy, **dict(options.get("copy") or {})},
            drop=tuple(dict.fromkeys((*self.drop, *(options.get("drop") or ())))),
            inline_images=bool(options.get("inline_images", self.inline_images)),
            chat_path=str(options.get("chat_path", self.chat_path)),
        )


PLAIN = Quirks()
OPTION_NAMES = ("auth", "stream_usage", "rename", "copy", "drop", "inline_images", "chat_path")


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str
    quirks: Quirks
    notes: str = ""


@cache
def _catalogue() -> dict[str, Any]:
    text = resources.files("omnirelay").joinpath("data/presets.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def presets() -> dict[str, Preset]:
    """Every OpenAI-compatible vendor preset, by channel type."""
    found: dict[str, Preset] = {}
    for name, entry in _catalogue()["presets"].items():
        quirks = Quirks(
            auth=entry.get("auth", "bearer"),
            stream_usage=entry.get("stream_usage", True),
            rename=dict(entry.get("rename") or {}),
            copy=dict(entry.get("copy") or {}),
            drop=tuple(entry.get("drop") or ()),
            inline_images=entry.get("inline_images", False),
        )
        found[name] = Preset(name, entry["base_url"], quirks, entry.get("notes", ""))
    return found


def default_base_url(channel_type: str) -> str | None:
    """The base URL a channel of this type uses when none is given."""
    catalogue = _catalogue()
    entry = catalogue["presets"].get(channel_type) or catalogue["native"].get(channel_type)
    return str(entry["base_url"]) if entry else None


def preset_at(base_url: str) -> str | None:
    """The preset whose default address (host and port) ``base_url`` has, if any.

    Loopback names count as one host, since local servers are reached by any of them.
    """
    address = _address(base_url)
    if address is None:
        return None
    for name, preset in presets().items():
        if _address(preset.base_url) == address:
            return name
    return None


def _address(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or port is None:
        return None
    return ("localhost" if _is_loopback(host) else host), port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
