"""Provider lookup by channel type."""

from __future__ import annotations

from omnirelay.providers.base import ChatProvider
from omnirelay.providers.openai import OpenAIProvider


class ProviderRegistry:
    def __init__(self) -> None:
        openai = OpenAIProvider()
        self._chat: dict[str, ChatProvider] = {"openai": openai}

    @property
    def types(self) -> list[str]:
        return sorted(self._chat)

    def chat(self, channel_type: str) -> ChatProvider | None:
        return self._chat.get(channel_type)
