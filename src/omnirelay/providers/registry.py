"""Provider lookup by channel type: the native dialects, one type per vendor preset, and the
task-only types (Midjourney, Suno, PicWish, the embedded parser, Tripo, Kling), whose
dialects live in ``providers.tasks``."""

from __future__ import annotations

from omnirelay.providers.anthropic import AnthropicProvider
from omnirelay.providers.azure import AzureOpenAIProvider
from omnirelay.providers.base import ChatProvider
from omnirelay.providers.cohere import CohereProvider
from omnirelay.providers.gemini import GeminiProvider
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.providers.presets import presets
from omnirelay.providers.tasks.registry import TASK_CHANNEL_TYPES

TASKS_ONLY = object()
"""What such a channel type answers for the operations beyond chat: none of them."""


class ProviderRegistry:
    def __init__(self) -> None:
        self._chat: dict[str, ChatProvider] = {
            # OpenAI itself serves the Responses API; vendors that speak its chat dialect
            # mostly do not (a channel's ``responses_api`` option says otherwise).
            "openai": OpenAIProvider(responses=True),
            "azure": AzureOpenAIProvider(),
            "anthropic": AnthropicProvider(),
            "gemini": GeminiProvider(),
        }
        for name, preset in presets().items():
            self._chat.setdefault(name, OpenAIProvider(preset.quirks))
        # Vendors that serve only operations beyond chat, and upstreams of task families
        # only (their dialects are in providers/tasks).
        self._others: dict[str, object] = {"cohere": CohereProvider()}
        self._others.update(dict.fromkeys(TASK_CHANNEL_TYPES, TASKS_ONLY))

    @property
    def types(self) -> list[str]:
        return sorted({*self._chat, *self._others})

    def chat(self, channel_type: str) -> ChatProvider | None:
        return self._chat.get(channel_type)

    def provider(self, channel_type: str) -> object | None:
        """The provider of a channel type, for the operations beyond chat: the caller checks
        it against the operation's protocol in ``providers.operations``."""
        found = self._chat.get(channel_type)
        return found if found is not None else self._others.get(channel_type)
