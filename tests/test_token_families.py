"""The token estimate for non-OpenAI families, measured against real reference tokenizers.

The corpus (tests/data/token_corpus: English, Chinese, code, JSON, mixed) was counted with
each family's reference tokenizer by tools/token_reference.py; the counts are stored in
tests/data/token_reference.json so this test needs none of those packages. For each family
the test states the error bound, asserts that every document stays within it, and asserts
that the bound is the measured worst case (rounded up to a whole percent), not padding. The
same bounds are documented in docs/token-counting.md, which this test also checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from omnirelay.wire.token_families import APPROXIMATIONS, family
from omnirelay.wire.tokens import TokenCounter

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "token_corpus"
DOC = Path(__file__).parent.parent / "docs" / "token-counting.md"

# The largest relative error |estimate - reference| / reference over any corpus document,
# in percent, per family. "gemini" is measured against every modern reference available
# offline, since no Gemini tokenizer is (see the doc).
BOUNDS = {
    "claude": 14,
    "llama": 5,
    "qwen": 7,
    "qwen3.5": 8,
    "deepseek": 5,
    "mistral": 9,
    "mistral-spm": 13,
    "gemini": 27,
}


def _stored() -> dict[str, Any]:
    return dict(json.loads((DATA / "token_reference.json").read_text()))


def _corpus() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*.txt"))}


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def test_the_corpus_is_the_one_the_references_counted() -> None:
    docs = _corpus()
    digest = hashlib.sha256()
    for name, text in sorted(docs.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    assert digest.hexdigest() == _stored()["corpus_sha256"], (
        "the corpus changed: recount with tools/token_reference.py counts"
    )
    kinds = {name.split("_")[0] for name in docs}
    assert kinds == {"en", "zh", "code", "json", "mixed"}
    assert sum(len(text) for text in docs.values()) > 15_000


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_estimate_error_stays_within_the_stated_bound(name: str, counter: TokenCounter) -> None:
    stored = _stored()
    estimate = APPROXIMATIONS[name]
    encode = counter.encoding("o200k_base").encode_ordinary
    worst = Fraction(0)
    for doc, text in _corpus().items():
        counted = estimate.count(text, encode)
        for reference in stored["families"][name]:
            truth = stored["counts"][reference][doc]
            error = Fraction(abs(counted - truth), truth)  # exact: no float edge at the bound
            assert error <= Fraction(BOUNDS[name], 100), (name, reference, doc, counted, truth)
            worst = max(worst, error)
    # The stated bound is the measurement itself, rounded up: not a loose ceiling.
    assert math.ceil(worst * 100) == BOUNDS[name]


def test_openai_counts_are_exact_and_other_families_estimated(counter: TokenCounter) -> None:
    text = "Hello, world!"  # 4 o200k tokens, 4 cl100k tokens
    assert counter.count("gpt-4o", text) == 4
    assert counter.count("claude-sonnet-4-0", text) == math.ceil(1.118 * 4)
    chinese = "你好，世界"  # 4 Han characters; o200k counts "，" as 1 token once Han is removed
    assert counter.count("deepseek-chat", chinese) == math.ceil(1.052 * 1 + 0.652 * 4)
    assert counter.count("gemini-2.5-pro", "") == 0


def test_unknown_families_use_the_gemini_envelope() -> None:
    assert APPROXIMATIONS["other"].per_token == APPROXIMATIONS["gemini"].per_token
    assert APPROXIMATIONS["other"].per_han == APPROXIMATIONS["gemini"].per_han
    assert APPROXIMATIONS["other"].han_apart == APPROXIMATIONS["gemini"].han_apart


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "openai"),
        ("gpt-oss-120b", "openai"),
        ("o3-mini", "openai"),
        ("text-embedding-3-small", "openai"),
        ("openai/gpt-4.1", "openai"),
        ("", "openai"),
        ("claude-sonnet-4-0", "claude"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "claude"),
        ("gemini-2.5-flash", "gemini"),
        ("google/gemma-3-27b-it", "gemini"),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen"),
        ("qwen-max", "qwen"),
        ("qwq-32b", "qwen"),
        ("qwen3.6-27b", "qwen3.5"),
        ("deepseek-reasoner", "deepseek"),
        ("deepseek-ai/DeepSeek-V3", "deepseek"),
        ("mistral-large-latest", "mistral"),
        ("codestral-latest", "mistral"),
        ("open-mistral-nemo", "mistral"),
        ("open-mixtral-8x22b", "mistral-spm"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-spm"),
        ("glm-4-plus", "other"),
    ],
)
def test_family_of_a_model_name(model: str, expected: str) -> None:
    assert family(model) == expected


def test_the_doc_states_the_same_bounds() -> None:
    text = DOC.read_text()
    # Rows of the bounds table: | `family` | reference | ... | **N %** |
    found = {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"^\| `([\w.-]+)` \|.*\| \*\*(\d+) %\*\* \|", text, re.MULTILINE)
    }
    assert found == BOUNDS
