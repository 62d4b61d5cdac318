"""The seed's documented chat-completions example (`shared/seed/000_36ba704ce77df802.txt`).

The seed file is documentation prose, so the request and the response are written out in
``tests/data/seed_example.json`` (which the benchmark harness reads too), matching it
exactly. Treat both dicts as read-only; deep-copy before changing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED_FILE = Path(__file__).resolve().parents[1] / "data" / "seed_example.json"
_SEED = json.loads(SEED_FILE.read_text())
SEED_REQUEST: dict[str, Any] = _SEED["request"]
SEED_RESPONSE: dict[str, Any] = _SEED["response"]
