"""What the engine is configured with: its families, and its limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omnirelay.store.tasks import TaskRow

Render = Callable[[TaskRow], dict[str, Any]]
"""A family's wire shape of a task, from its row (the API layer's)."""


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    """As stored in ``tasks.family``, and as dialects are registered (``openai.video``)."""
    id_prefix: str
    """The start of its public ids (``video_``)."""
    endpoint: str
    """The request log's endpoint for its settlements (``videos``)."""
    render: Render
    """Its wire shape, for webhook events."""


@dataclass(frozen=True, slots=True)
class TaskLimits:
    poll_tick_s: float = 1.0
    poll_batch: int = 100
    channel_polls: int = 8
    poll_min_s: float = 2.0
    poll_max_s: float = 30.0
    poll_timeout_s: float = 30.0
    early_poll_s: float = 2.0
    lease_s: float = 60.0
    deadline_s: float = 7200.0
    submit_timeout_s: float = 60.0
    submit_ambiguity_s: float = 300.0
    result_max_bytes: int = 512 * 1024 * 1024
    download_timeout_s: float = 600.0
    retention_days: int = 7
    result_url_ttl_s: int = 3600
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 8
    allow_private_networks: bool = False
    public_base_url: str = ""
    local_runs: int = 16
    """How many tasks the gateway works itself (background responses) at once, per process."""
