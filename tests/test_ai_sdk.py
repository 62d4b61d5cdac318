"""The Vercel AI SDK's default ``openai()`` model (it calls ``/v1/responses``) against the
real gateway, on an OpenAI channel (native) and an Anthropic one (translated).

``tests/node`` is a small Node project (its ``package-lock.json`` is committed) installed by
``make test`` with ``npm ci``; this test runs its script with ``node``, which needs Node 20 or
later. Nothing is downloaded here: a missing install is a failure that says how to fix it,
never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.responses_lanes import CLAUDE, GPT, Lane, claude, group, lane  # noqa: F401

NODE_PROJECT = Path(__file__).with_name("node")
SCRIPT = NODE_PROJECT / "ai_sdk.mjs"
MIN_NODE = 20


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"node is not installed: install Node.js {MIN_NODE} or later (and npm)")
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE:
        pytest.fail(f"node {version} is too old: install Node.js {MIN_NODE} or later")
    if not (NODE_PROJECT / "node_modules" / "ai").is_dir():
        pytest.fail(f"the AI SDK is not installed: run 'npm ci' in {NODE_PROJECT} (make test does)")
    return found


def run_script(lane: Lane, model: str) -> dict[str, Any]:
    key = lane.key()
    env = {
        **os.environ,
        "OPENAI_BASE_URL": lane.gateway.base_url,
        "OPENAI_API_KEY": key,
        "MODEL": model,
    }
    done = subprocess.run(
        [node(), str(SCRIPT)],
        cwd=NODE_PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows"] = lane.rows(key, count=7)
    return result


@pytest.mark.parametrize("model", [GPT, CLAUDE], ids=["openai-native", "anthropic-translated"])
def test_the_ai_sdk_default_openai_model(lane: Lane, model: str) -> None:
    result = run_script(lane, model)
    text = result["generateText"]
    assert text["text"] == "Echo: hello there" and text["finishReason"] == "stop"
    assert text["responseId"].startswith("resp_")
    assert text["usage"]["inputTokens"] > 0 and text["usage"]["outputTokens"] == 3

    streamed = result["streamText"]
    assert streamed["text"] == "Echo: one two three" and streamed["finishReason"] == "stop"
    assert streamed["usage"]["outputTokens"] == 4

    answers = {
        GPT: ("Echo: weather in Paris?", "Echo: weather in Rome?"),
        CLAUDE: ("Tool results: sunny in example city",) * 2,
    }[model]
    for name, answer in zip(("tools", "streamTools"), answers, strict=True):
        first, second = result[name]["steps"]
        assert first["toolCalls"] == [{"name": "get_weather", "input": {"city": "example city"}}]
        assert first["toolResults"] == ["sunny in example city"]
        assert first["finishReason"] == "tool-calls"
        assert second["toolCalls"] == [] and result[name]["text"] == answer

    assert result["generateObject"]["object"] == {"name": "example name", "population": 0}

    # Every call went through /v1/responses and was charged.
    rows = result["rows"]
    assert len(rows) == 7
    assert {row["endpoint"] for row in rows} == {"responses"}
    assert all(row["status"] == 200 and row["cost_nano"] > 0 for row in rows)
    if model == GPT:
        assert {r.path for r in lane.fake.received} == {"/v1/responses"}
        # The SDK names its earlier tool call by reference (store is on): the gateway
        # spelled it out, since the upstream keeps nothing (store: false).
        inputs = [r.body["input"] for r in lane.fake.received if isinstance(r.body["input"], list)]
        assert any(
            [item.get("type", "message") for item in given]
            == ["message", "function_call", "function_call_output"]
            for given in inputs
        )
    else:
        assert lane.claude.received and lane.fake.received == []
