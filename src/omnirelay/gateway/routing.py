"""Which channels may serve a call, and which one to try next.

The candidates are the enabled channels of the key's group that list the model, in tiers
of equal priority, highest first. Within a tier the pick is weighted random. A channel
already tried in this request, or one its health rules out, is never picked.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from omnirelay.providers.base import Endpoint
from omnirelay.providers.http import Timeouts
from omnirelay.store.channels import ChannelRow
from omnirelay.wire.errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Route:
    channel: ChannelRow
    endpoint: Endpoint
    upstream_model: str
    timeouts: Timeouts
    body_overrides: dict[str, Any] = field(default_factory=dict)
    max_inflight: int | None = None

    @property
    def channel_id(self) -> int:
        return self.channel.id


class Router:
    def __init__(self, default_timeouts: Timeouts, rng: random.Random | None = None) -> None:
        self._defaults = default_timeouts
        self._rng = rng or random.Random()
        self._routes: dict[tuple[str, str], list[Route]] = {}
        self._by_channel: dict[tuple[int, str], Route] = {}
        self._channel_ids: set[int] = set()
        self._channels: dict[int, ChannelRow] = {}

    @property
    def channel_ids(self) -> set[int]:
        return self._channel_ids

    def replace(self, channels: Iterable[ChannelRow]) -> None:
        routes: dict[tuple[str, str], list[Route]] = defaultdict(list)
        ids: set[int] = set()
        by_id: dict[int, ChannelRow] = {}
        for channel in channels:
            ids.add(channel.id)
            by_id[channel.id] = channel
            if not channel.enabled:
                continue
            endpoint = Endpoint(
                base_url=channel.base_url,
                api_key=channel.api_key,
                headers=dict(channel.options.get("headers") or {}),
                options=channel.options,
            )
            timeouts = self._defaults.merged(channel.options.get("timeouts") or {})
            for model in channel.models:
                routes[(channel.group_name, model)].append(
                    Route(
                        channel=channel,
                        endpoint=endpoint,
                        upstream_model=channel.model_mapping.get(model, model),
                        timeouts=timeouts,
                        body_overrides=dict(channel.options.get("body_overrides") or {}),
                        max_inflight=channel.options.get("max_inflight"),
                    )
                )
        for candidates in routes.values():
            candidates.sort(key=lambda route: -route.channel.priority)
        self._routes = dict(routes)
        self._by_channel = {
            (route.channel_id, model): route
            for (_group, model), candidates in routes.items()
            for route in candidates
        }
        self._channel_ids = ids
        self._channels = by_id

    def channel(self, channel_id: int) -> ChannelRow | None:
        return self._channels.get(channel_id)

    def all_channels(self) -> list[ChannelRow]:
        return list(self._channels.values())

    def serves(self, group: str, model: str) -> bool:
        """Whether some enabled channel of the group lists the model."""
        return (group, model) in self._routes

    def route(self, channel_id: int, model: str) -> Route | None:
        """How to reach one enabled channel for one model (a task's follow-up calls)."""
        return self._by_channel.get((channel_id, model))

    def models_for(self, group: str) -> list[str]:
        return sorted({model for (g, model) in self._routes if g == group})

    def candidates(self, group: str, model: str) -> list[Route]:
        routes = self._routes.get((group, model))
        if not routes:
            raise ModelNotFound(
                f"The model '{model}' does not exist or no channel serves it. "
                "List the available models with GET /v1/models.",
                param="model",
            )
        return routes

    def pick(
        self,
        candidates: list[Route],
        tried: Collection[int],
        usable: Callable[[Route], bool],
    ) -> Route | None:
        """A weighted pick in the highest tier that still has a usable, untried channel."""
        index = 0
        while index < len(candidates):
            priority = candidates[index].channel.priority
            tier: list[Route] = []
            while index < len(candidates) and candidates[index].channel.priority == priority:
                route = candidates[index]
                if route.channel_id not in tried and usable(route):
                    tier.append(route)
                index += 1
            if tier:
                return self._weighted(tier)
        return None

    def _weighted(self, tier: list[Route]) -> Route:
        if len(tier) == 1:
            return tier[0]
        # A walk over a few weights costs less than random.choices' cumulative table.
        total = 0
        for route in tier:
            total += max(route.channel.weight, 0)
        if total == 0:
            return self._rng.choice(tier)
        point = self._rng.random() * total
        for route in tier:
            point -= max(route.channel.weight, 0)
            if point < 0:
                return route
        return tier[-1]
