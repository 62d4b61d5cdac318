"""One group of channels of every dialect, for the inbound dialects' tests: an OpenAI fake
(chat and the operations beyond it), an Anthropic fake and a Gemini fake, each in the
group's own channel, with every model they serve priced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .fake_anthropic import FakeAnthropic
from .fake_gemini import FakeGemini
from .fake_openai_more import FakeOpenAIMore
from .gateway import Gateway, wait_until

GPT, CLAUDE, GEMINI = "gpt-4o", "claude-sonnet-4-0", "gemini-2.5-flash"
OPENAI_MODELS = [
    GPT,
    "text-embedding-3-small",
    "gpt-3.5-turbo-instruct",
    "dall-e-3",
    "dall-e-2",
    "tts-1",
    "whisper-1",
]
GEMINI_MODELS = [GEMINI, "gemini-embedding-001"]
UNLISTED_PRICES = {"gpt-3.5-turbo-instruct": ("1.5", "2"), "gemini-embedding-001": ("0.15", "0")}


@dataclass
class Upstreams:
    openai: FakeOpenAIMore
    claude: FakeAnthropic
    gemini: FakeGemini

    def reset(self) -> None:
        self.openai.reset()
        self.claude.reset()
        self.gemini.reset()


@contextmanager
def upstreams(gateway: Gateway, group: str) -> Iterator[Upstreams]:
    """The three fakes, behind channels of ``group``, once the running gateway knows the
    prices set here."""
    with FakeOpenAIMore() as openai, FakeAnthropic() as claude, FakeGemini() as gemini:
        channels: list[dict[str, Any]] = [
            gateway.add_channel(
                name=f"{group}-openai",
                type="openai",
                base_url=openai.base_url,
                api_key=openai.api_key,
                models=OPENAI_MODELS,
                group=group,
            ),
            gateway.add_channel(
                name=f"{group}-anthropic",
                type="anthropic",
                base_url=claude.base_url,
                api_key=claude.api_key,
                models=[CLAUDE],
                group=group,
            ),
            gateway.add_channel(
                name=f"{group}-gemini",
                type="gemini",
                base_url=gemini.base_url,
                api_key=gemini.api_key,
                models=GEMINI_MODELS,
                group=group,
            ),
        ]
        for model, (given, made) in UNLISTED_PRICES.items():
            gateway.cli("price", "set", model, "--input", given, "--output", made)
        probe = gateway.create_key(name=f"{group}-price-probe", group=group)["key"]
        wait_until(lambda: _priced(gateway, probe), timeout=5)
        try:
            yield Upstreams(openai, claude, gemini)
        finally:
            for channel in channels:
                gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


def _priced(gateway: Gateway, key: str) -> bool:
    headers = {"Authorization": f"Bearer {key}"}
    calls = [
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 1}),
        ("/v1/embeddings", {"model": "gemini-embedding-001", "input": "hi"}),
    ]
    return all(
        httpx.post(gateway.url + path, json=body, headers=headers, timeout=10).status_code == 200
        for path, body in calls
    )
