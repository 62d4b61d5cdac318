"""Usage an upstream reports is data: checked against the gateway's own counts before it is
charged.

A report is not trusted when a count is not a non-negative integer of at most 10⁹, when
its prompt is above 4 x the locally counted prompt + 1,000, or when its completion is above
``max_tokens`` x ``n`` x 1.1 + 16 for a request that set them. Then the gateway charges
what it counts itself, as it does when an upstream reports nothing. A completion reported
below half of what the gateway counts in the text it relayed is charged at the count.

Counting costs CPU, so each count is made only when a rule needs it: a prompt of at most
1,000 tokens can never fail its rule, and a text of at most twice the reported completion's
tokens in bytes cannot hold twice as many tokens (a token is at least one byte).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omnirelay.wire.usage import Usage, implausible

log = logging.getLogger("omnirelay.usage")

PROMPT_FACTOR = 4
PROMPT_SLACK = 1000


@dataclass(slots=True)
class Counts:
    """The gateway's own counts of one call, made on demand."""

    prompt: Callable[[], int]
    completion: Callable[[], int]
    completion_bytes: int
    """An upper bound of the completion's tokens: the bytes of the text relayed."""
    output_cap: int | None = None
    """``max_tokens`` x ``n`` when the request set them."""

    def usage(self) -> Usage:
        return Usage(self.prompt(), self.completion(), counted_locally=True)


def trusted_usage(reported: Any, counts: Counts, channel_id: int | None) -> Usage:
    """The usage to charge: the upstream's when it is plausible, else the gateway's count."""
    if not isinstance(reported, dict):
        return counts.usage()
    why = implausible(reported)
    usage = Usage.from_openai(reported) or Usage()
    if why is None:
        why = _beyond_counts(usage, counts)
    if why is not None:
        log.warning(
            "channel %s reported usage that cannot be true (%s); charging the counted tokens",
            channel_id,
            why,
        )
        return counts.usage()
    if counts.completion_bytes > 2 * usage.completion_tokens:
        counted = counts.completion()
        if 2 * usage.completion_tokens < counted:
            log.warning(
                "channel %s reported %d completion tokens for a text of %d; charging the count",
                channel_id,
                usage.completion_tokens,
                counted,
            )
            return dataclasses.replace(usage, completion_tokens=counted, counted_locally=True)
    return usage


def _beyond_counts(usage: Usage, counts: Counts) -> str | None:
    if usage.prompt_tokens > PROMPT_SLACK:
        local = counts.prompt()
        if usage.prompt_tokens > PROMPT_FACTOR * local + PROMPT_SLACK:
            return f"prompt_tokens {usage.prompt_tokens} for a prompt counted at {local}"
    cap = counts.output_cap
    if cap is not None and usage.completion_tokens * 10 > cap * 11 + 160:
        return f"completion_tokens {usage.completion_tokens} past max_tokens {cap}"
    return None
