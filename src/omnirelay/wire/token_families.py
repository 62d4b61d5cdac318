"""Token counts for model families whose tokenizers do not ship with the package.

OpenAI's encodings (``encodings``) count exactly. For every other family the
count is a linear estimate from two cheap features of the text:

- its o200k token count, taken either of the whole text or of the text with its Han
  characters removed (``han_apart``), and
- its number of Han characters.

Tokenizers differ most on Chinese, so Han characters get a rate of their own. The
coefficients were fitted against real reference tokenizers over a fixed multilingual corpus
(English, Chinese, code, JSON); ``docs/token-counting.md`` names each reference and the
measured error, and ``tests/test_token_families.py`` asserts that bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# CJK Unified Ideographs, Extension A, and the compatibility block.
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Approximation:
    family: str
    per_token: float
    """Estimated tokens per o200k token of the (possibly Han-free) text."""
    per_han: float
    """Estimated tokens per Han character."""
    han_apart: bool
    """Count o200k tokens of the text without its Han characters, rather than of all of it."""

    def count(self, text: str, encode: Callable[[str], list[int]]) -> int:
        if not text:
            return 0
        rest = HAN.sub("", text)
        han = len(text) - len(rest)
        base = rest if self.han_apart else text
        tokens = len(encode(base)) if base else 0
        return math.ceil(self.per_token * tokens + self.per_han * han)


# Fitted by tools/token_reference.py (minimax relative error over the corpus); see the doc.
APPROXIMATIONS: dict[str, Approximation] = {
    a.family: a
    for a in (
        Approximation("claude", 1.118, 0.255, han_apart=False),
        Approximation("llama", 1.002, 0.055, han_apart=False),
        Approximation("qwen", 1.034, 0.737, han_apart=True),
        Approximation("qwen3.5", 1.095, 0.644, han_apart=True),
        Approximation("deepseek", 1.052, 0.652, han_apart=True),
        Approximation("mistral", 1.071, 0.129, han_apart=False),
        Approximation("mistral-spm", 1.234, 0.170, han_apart=False),
        # No Gemini tokenizer is available offline: this is the fit least wrong against
        # every modern tokenizer that is (see the doc). Unknown families use it too.
        Approximation("gemini", 1.034, 0.797, han_apart=True),
        Approximation("other", 1.034, 0.797, han_apart=True),
    )
}

# Checked in order against the lowered model name; the first substring found decides.
# More specific names come before the family names they contain.
_FAMILY_MARKERS: tuple[tuple[str, str], ...] = (
    ("qwen3.5", "qwen3.5"),
    ("qwen3.6", "qwen3.5"),
    ("qwen", "qwen"),
    ("qwq", "qwen"),
    ("qvq", "qwen"),
    ("deepseek", "deepseek"),
    # Mistral's first open models use SentencePiece; later ones use Tekken.
    ("mixtral", "mistral-spm"),
    ("mistral-7b", "mistral-spm"),
    ("mistral-tiny", "mistral-spm"),
    ("mistral", "mistral"),
    ("stral", "mistral"),  # codestral, ministral, magistral, devstral, voxtral
    ("pixtral", "mistral"),
    ("claude", "claude"),
    ("gemini", "gemini"),
    ("gemma", "gemini"),
    ("llama", "llama"),
)

# Names counted exactly with OpenAI's own encodings.
_OPENAI_PREFIXES = (
    "gpt-", "gpt4", "chatgpt", "o1", "o3", "o4", "text-embedding", "davinci", "babbage",
    "ft:gpt", "omni-moderation", "text-moderation", "computer-use",
)  # fmt: skip


def family(model: str) -> str:
    """The tokenizer family of a model name: ``openai`` (exact), or an approximated one."""
    lowered = model.lower()
    name = lowered.rsplit("/", 1)[-1]
    if name.startswith(_OPENAI_PREFIXES) or not name:
        return "openai"
    for marker, found in _FAMILY_MARKERS:
        if marker in lowered:
            return found
    return "other"


def approximation(model: str) -> Approximation | None:
    """How to estimate a model's tokens; None when they are counted exactly."""
    return APPROXIMATIONS.get(family(model))
