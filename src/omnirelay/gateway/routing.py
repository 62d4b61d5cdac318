"""Which channel serves a call: the channels of the key's group that list the model,
highest priority tier first, weighted random within a tier."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from omnirelay.providers.base import Endpoint
from omnirelay.store.channels import ChannelRow
from omnirelay.wire.errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Route:
    channel: ChannelRow
    endpoint: Endpoint
    upstream_model: str


class Router:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._channels: list[ChannelRow] = []
        self._by_group_model: dict[tuple[str, str], list[ChannelRow]] = {}
        self._endpoints: dict[int, Endpoint] = {}

    def replace(self, channels: Iterable[ChannelRow]) -> None:
        self._channels = list(channels)
        index: dict[tuple[str, str], list[ChannelRow]] = defaultdict(list)
        for channel in self._channels:
            if channel.enabled:
                for model in channel.models:
                    index[(channel.group_name, model)].append(channel)
        for candidates in index.values():
            candidates.sort(key=lambda channel: -channel.priority)
        self._by_group_model = dict(index)
        self._endpoints = {
            channel.id: Endpoint(
                base_url=channel.base_url,
                api_key=channel.api_key,
                headers=dict(channel.options.get("headers") or {}),
                options=channel.options,
            )
            for channel in self._channels
        }

    def models_for(self, group: str) -> list[str]:
        return sorted({model for (g, model) in self._by_group_model if g == group})

    def serves(self, group: str, model: str) -> bool:
        return (group, model) in self._by_group_model

    def route(self, group: str, model: str) -> Route:
        candidates = self._by_group_model.get((group, model))
        if not candidates:
            raise ModelNotFound(
                f"The model '{model}' does not exist or no channel serves it. "
                "List the available models with GET /v1/models.",
                param="model",
            )
        channel = self._pick(candidates)
        return Route(
            channel=channel,
            endpoint=self._endpoints[channel.id],
            upstream_model=channel.model_mapping.get(model, model),
        )

    def _pick(self, candidates: list[ChannelRow]) -> ChannelRow:
        top = candidates[0].priority
        tier = [channel for channel in candidates if channel.priority == top]
        if len(tier) == 1:
            return tier[0]
        weights = [max(channel.weight, 0) for channel in tier]
        if sum(weights) == 0:
            return self._rng.choice(tier)
        return self._rng.choices(tier, weights=weights)[0]
