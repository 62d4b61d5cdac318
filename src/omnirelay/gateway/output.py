"""A stream's output counted as it passes, and cut when it runs away.

:class:`OutputTally` keeps counts, never the text: generated text waits in a small pending
buffer and is tokenized once enough of it has gathered, so the work is O(new data). It is
tokenized early enough that the stream is stopped at its limits, never far past them: a
token is at least one byte, so while the pending bytes stay below the tokens still allowed,
no limit can have been passed.

Two limits cut a stream: its output passing the request's ``max_tokens`` x ``n`` (with a
10% or 16-token margin, whichever is larger), and its running cost passing what the key
can pay (the call's hold plus the key's remaining budget). A request that sets no output
cap is never cut at the hold's assumed output; only money stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from omnirelay.gateway.pricing import Quote
from omnirelay.wire.errors import InsufficientQuota, UpstreamError
from omnirelay.wire.usage import Usage

RECOUNT_BYTES = 4096
UNLIMITED = 1 << 40


class OutputPastCap(UpstreamError):
    """The upstream generated past the request's output cap: it ignored ``max_tokens``."""

    code = "output_limit_exceeded"


class SpendPastLimit(InsufficientQuota):
    """The stream's cost reached what the key can pay."""


def output_cap(max_tokens: int | None, choices: int = 1) -> int | None:
    """The most output tokens a request may get before its stream is cut; None: no cap."""
    if max_tokens is None or max_tokens <= 0:
        return None
    base = max_tokens * max(choices, 1)
    return base + max(base // 10, 16)


@dataclass(slots=True)
class SpendLimit:
    """What a stream may cost: ``limit_nano`` at ``quote``, for its prompt plus its output."""

    quote: Quote
    limit_nano: int
    prompt_bound: int
    """An upper bound of the prompt's tokens (the hold's: the body's bytes)."""
    count_prompt: Callable[[], int]
    """The prompt's exact tokens, counted once and only when the bound is not enough."""
    _prompt: int | None = field(default=None, init=False)

    def prompt_tokens(self) -> int:
        if self._prompt is None:
            self._prompt = self.count_prompt()
        return self._prompt

    def cost(self, output_tokens: int, exact: bool = False) -> int:
        prompt = self.prompt_tokens() if exact or self._prompt is not None else self.prompt_bound
        return self.quote.cost(Usage(prompt_tokens=prompt, completion_tokens=output_tokens))

    def over(self, output_tokens: int) -> bool:
        if self.cost(output_tokens) <= self.limit_nano:
            return False
        return self.cost(output_tokens, exact=True) > self.limit_nano

    def tokens_left(self, output_tokens: int) -> int:
        """Output tokens the stream can still afford, rounded down (a lower bound)."""
        per_token = self.quote.price.output_nano_per_m * self.quote.multiplier_ppm
        if per_token <= 0:
            return UNLIMITED
        left = self.limit_nano - self.cost(output_tokens)
        return max(left * 10**12 // per_token, 0)


class OutputTally:
    """Counts a stream's generated text in tokens; raises when a limit is passed."""

    __slots__ = (
        "_cap",
        "_count",
        "_pending",
        "_pending_bytes",
        "_recount_at",
        "_spend",
        "bytes",
        "counted",
    )

    def __init__(
        self, count: Callable[[str], int], cap: int | None, spend: SpendLimit | None
    ) -> None:
        self._count = count
        self._cap = cap
        self._spend = spend
        self._pending: list[str] = []
        self._pending_bytes = 0
        self.bytes = 0
        """Every byte of text so far: an upper bound of its tokens."""
        self.counted = 0
        self._recount_at = self._allowance()

    def add(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode())
        self._pending.append(text)
        self._pending_bytes += size
        self.bytes += size
        if self._pending_bytes >= self._recount_at:
            self._recount()
            self._check()

    @property
    def tokens(self) -> int:
        """Every token so far (counting what is pending)."""
        if self._pending:
            self._recount()
        return self.counted

    @property
    def empty(self) -> bool:
        return not self.counted and not self._pending

    def _recount(self) -> None:
        self.counted += self._count("".join(self._pending))
        self._pending.clear()
        self._pending_bytes = 0

    def _check(self) -> None:
        if self._cap is not None and self.counted > self._cap:
            raise OutputPastCap(
                f"The upstream generated more than the request's max_tokens allows "
                f"({self.counted} tokens); the stream was cut."
            )
        if self._spend is not None and self._spend.over(self.counted):
            raise SpendPastLimit(
                "The stream was cut: its cost reached what this key can pay. What was "
                "generated is charged."
            )
        self._recount_at = self._allowance()

    def _allowance(self) -> int:
        allowed = RECOUNT_BYTES
        if self._cap is not None:
            allowed = min(allowed, self._cap - self.counted)
        if self._spend is not None:
            allowed = min(allowed, self._spend.tokens_left(self.counted))
        return max(allowed, 1)
