"""A gateway process loads only the packages its settings need.

Each check runs in a fresh interpreter (``python -c``), since this test process has long
since imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_metering import REDIS_URL

ADMIN_KEY = "sk-admin-test-0123456789abcdef0123456789abcdef"

# What a worker does on start: the `omnirelay serve` imports, then the state built in the
# app's lifecycle (store opened and migrated, counters made). Prints what it loaded.
WORKER_START = """
import asyncio, json, sys
from omnirelay import cli, workers
from omnirelay.config import load_settings
from omnirelay.server import build_state

async def main():
    state = await build_state(load_settings())
    counters = type(state.counters).__name__
    await state.counters.close()
    await state.store.close()
    return counters

counters = asyncio.run(main())
print(json.dumps({"counters": counters, "modules": sorted(sys.modules)}))
"""


def run_python(code: str, workdir: Path, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter in ``workdir``; it prints one JSON object."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("OMNIRELAY_")}
    clean.update(OMNIRELAY_DATA_DIR=str(workdir / "data"), OMNIRELAY_ADMIN_KEY=ADMIN_KEY, **env)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loaded(result: dict[str, object], package: str) -> list[str]:
    modules = result["modules"]
    assert isinstance(modules, list)
    return [name for name in modules if name == package or name.startswith(package + ".")]


def test_a_worker_without_redis_url_does_not_import_redis(tmp_path: Path) -> None:
    result = run_python(WORKER_START, tmp_path)

    assert result["counters"] == "MemoryCounters"
    assert loaded(result, "redis") == []


def test_a_worker_with_redis_url_uses_redis(tmp_path: Path) -> None:
    result = run_python(WORKER_START, tmp_path, OMNIRELAY_REDIS_URL=REDIS_URL)

    assert result["counters"] == "RedisCounters"
    assert "redis" in loaded(result, "redis")
