"""Canonical token usage, read from OpenAI-shaped ``usage`` objects.

``prompt_tokens`` counts every input token: ``cached_tokens`` (cache reads) and
``cache_write_tokens`` (tokens written to a prompt cache) are parts of it, not additions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    counted_locally: bool = False
    cache_write_tokens: int = 0
    """Last, so that positional construction elsewhere keeps its meaning."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read OpenAI's usage object; None when it is absent or not an object."""
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        if not isinstance(details, dict):
            details = {}
        return cls(
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            cached_tokens=_count(details.get("cached_tokens")),
            cache_write_tokens=_cache_writes(usage, details),
        )


MAX_PLAUSIBLE_COUNT = 10**9
_COUNTED_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
_DETAIL_FIELDS = ("prompt_tokens_details", "completion_tokens_details")


def implausible(usage: dict[str, Any]) -> str | None:
    """Why an OpenAI usage object cannot be true, or None: every count present must be a
    non-negative integer of at most 10⁹."""
    for name in _COUNTED_FIELDS:
        value = usage.get(name)
        # The common case first: a plain int in range (bool is a subclass, so type() is).
        if value is not None and not (type(value) is int and 0 <= value <= MAX_PLAUSIBLE_COUNT):
            return f"{name} {_bad_count(value)}"
    for group in _DETAIL_FIELDS:
        details = usage.get(group)
        if details and type(details) is dict:
            for name, value in details.items():
                if value is not None and (problem := _bad_count(value)):
                    return f"{group}.{name} {problem}"
    return None


def _bad_count(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "is not an integer"
    if value < 0:
        return "is negative"
    if value > MAX_PLAUSIBLE_COUNT:
        return "is above 10^9"
    return None


# Where OpenAI-compatible vendors and translators put cache writes; OpenAI itself has none.
_CACHE_WRITE_DETAILS = ("cache_write_tokens", "cache_creation_tokens")
_CACHE_WRITE_TOP = ("cache_creation_input_tokens",)


def _cache_writes(usage: dict[str, Any], details: dict[str, Any]) -> int:
    for name in _CACHE_WRITE_DETAILS:
        if name in details:
            return _count(details[name])
    for name in _CACHE_WRITE_TOP:
        if name in usage:
            return _count(usage[name])
    return 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
