"""Offline token counting, for upstreams that report no usage.

The BPE rank files come installed with a package (see ``encodings``), so nothing downloads
at run time.
Encodings load lazily on first use: most calls carry upstream usage and never need one.
OpenAI models count exactly; other families are estimated from o200k with a measured
error (see ``token_families`` and ``docs/token-counting.md``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Protocol

from omnirelay.wire.token_families import approximation

# OpenAI's accounting adds a few tokens per message for the chat framing.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3

_O200K_PREFIXES = (
    "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4", "chatgpt-4o",
)  # fmt: skip


class Encoding(Protocol):
    # Special tokens written in a prompt ("<|endoftext|>") are counted as the plain text
    # they are to the model's API, never refused.
    def encode_ordinary(self, text: str) -> list[int]: ...


def encoding_name(model: str) -> str:
    """The encoding a model uses; o200k for current OpenAI models, cl100k otherwise."""
    lowered = model.lower().rsplit("/", 1)[-1]
    return "o200k_base" if lowered.startswith(_O200K_PREFIXES) else "cl100k_base"


class TokenCounter:
    """Counts tokens with lazily loaded encodings, shared by one process."""

    def __init__(self) -> None:
        self._encodings: dict[str, Encoding] = {}
        self._lock = threading.Lock()

    def encoding(self, name: str) -> Encoding:
        found = self._encodings.get(name)
        if found is None:
            with self._lock:
                found = self._encodings.get(name)
                if found is None:
                    found = _load(name)
                    self._encodings[name] = found
        return found

    def count(self, model: str, text: str) -> int:
        if not text:
            return 0
        estimate = approximation(model)
        if estimate is not None:
            return estimate.count(text, self.encoding("o200k_base").encode_ordinary)
        return len(self.encoding(encoding_name(model)).encode_ordinary(text))

    def counter(self, model: str) -> Callable[[str], int]:
        """``count`` for one model, as a function of the text alone."""
        return functools.partial(self.count, model)

    def count_prompt(self, model: str, text: str, messages: int) -> int:
        return self.count(model, text) + TOKENS_PER_MESSAGE * messages + TOKENS_PER_REPLY


def utf8_length(text: str) -> int:
    """The bytes of ``text`` in UTF-8: an upper bound of its tokens in any BPE encoding."""
    return len(text) if text.isascii() else len(text.encode())


def _load(name: str) -> Encoding:
    # Imported here: tiktoken and its tables cost memory only once a count needs them.
    from omnirelay.wire import encodings

    return encodings.load(name)
