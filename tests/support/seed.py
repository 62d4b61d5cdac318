"""The chat-completions example of the document the project started from (its "seed").

That document is prose kept outside the repository, so its request and response were
written out, exactly, in ``tests/data/seed_example.json`` (which the benchmark harness
reads too). Treat both dicts as read-only; deep-copy before changing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED_FILE = Path(__file__).resolve().parents[1] / "data" / "seed_example.json"
_SEED = json.loads(SEED_FILE.read_text())
SEED_REQUEST: dict[str, Any] = _SEED["request"]
SEED_RESPONSE: dict[str, Any] = _SEED["response"]
