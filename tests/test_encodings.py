"""OpenAI's encodings load offline, from the installed files, and count as the reference."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

from omnirelay.wire import encodings
from support import processes

TEXTS = [
    "Hello, world!",
    "What's the weather like in Boston today?",
    "Привет, как дела? 你好，世界。こんにちは 🌍🚀",
    '{"type": "function", "function": {"name": "get_current_weather"}}',
    "    def f(x):\n\treturn x ** 2  # 12345678901234567890\r\n",
    "<|endoftext|> is only text here",
    "a" * 5000,
]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_counts_equal_the_rust_reference(name: str) -> None:
    import bpe_openai

    ours = encodings.load(name)
    reference = bpe_openai.get_encoding(name)
    for text in TEXTS:
        expected = reference.encode(text, disallowed_special=())
        assert ours.encode_ordinary(text) == expected, text[:40]


def test_loading_reaches_no_network_and_leaves_the_extension_unloaded() -> None:
    script = """
import socket, sys
class Offline(socket.socket):
    def connect(self, *args):
        raise OSError("no network in this test")
def refuse(*args, **kwargs):
    raise OSError("no network in this test")
socket.socket = Offline
socket.getaddrinfo = refuse
socket.create_connection = refuse
from omnirelay.wire.tokens import TokenCounter
counter = TokenCounter()
print(counter.count("gpt-4o", "Hello, world!"), counter.count("gpt-4", "Hello, world!"))
print(sorted(name for name in sys.modules if name.startswith("bpe_openai")))
"""
    done = processes.run([sys.executable, "-c", script], timeout=120, check=True)
    assert done.stdout.splitlines() == ["4 4", "[]"]


def test_a_file_that_is_not_the_expected_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = gzip.decompress((encodings.data_folder() / "cl100k_base.tiktoken.gz").read_bytes())
    damaged = original.replace(b" 100\n", b" 101\n", 1)
    assert damaged != original
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(damaged))
    monkeypatch.setattr(encodings, "data_folder", lambda: tmp_path)
    with pytest.raises(encodings.EncodingFileError, match="not the one tiktoken expects"):
        encodings.load("cl100k_base")
    with pytest.raises(encodings.EncodingFileError, match="Cannot read"):
        encodings.load("o200k_base")  # absent from this folder
    with pytest.raises(encodings.EncodingFileError, match="Unknown encoding"):
        encodings.load("p50k_base")
