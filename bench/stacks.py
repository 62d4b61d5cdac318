"""Summaries of py-spy's raw (collapsed) stacks: where the samples are, self and inclusive.

.venv/bin/python -m bench.stacks bench/results/profile/non-stream.txt [--top 30] [--grep X]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames:
            stacks.append((frames.split(";"), int(count)))
    return stacks


ENTRY = ("cli.py", "workers.py", "server.py")


def by_module(stacks: list[tuple[list[str], int]]) -> Counter[str]:
    """Samples by the innermost omnirelay module on the stack and the package it was in."""
    groups: Counter[str] = Counter()
    for frames, count in stacks:
        ours = [f for f in frames if "omnirelay/" in f and not f.split(":")[0].endswith(ENTRY)]
        mine = ours[-1].split("(", 1)[1].split(":")[0] if ours else "(no omnirelay frame)"
        leaf = frames[-1].split("(", 1)[-1].split("/")[0].split(":")[0]
        groups[f"{mine} -> {leaf}"] += count
    return groups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--grep", default="", help="inclusive figures only for frames with this")
    parser.add_argument("--by-module", action="store_true", help="our module -> library below it")
    args = parser.parse_args()
    stacks = load(args.path)
    total = sum(count for _, count in stacks)
    if args.by_module:
        print(f"{total} samples")
        for key, count in by_module(stacks).most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {key}")
        return
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{total} samples")
    print("\nself:")
    for frame, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("\ninclusive:")
    shown = [(f, c) for f, c in inclusive.most_common() if args.grep in f][: args.top]
    for frame, count in shown:
        print(f"  {100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
