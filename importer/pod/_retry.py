"""When and how long the client waits before trying a Pod call again.

Retried: connection failures, timeouts, read/write errors, broken HTTP
framing, and the statuses 408, 429, 500, 502, 503, 504.  A 500 from a Pod is
a server fault, not a verdict on the request (4xx are those), so it gets the
same bounded budget as a 503.  Waits grow exponentially with jitter; a
``Retry-After`` header (seconds or an HTTP date) replaces the computed wait,
and every wait is capped by what is left of ``max_elapsed``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio
import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.stop import stop_base

__all__ = [
    "RETRY_STATUSES",
    "RetryPolicy",
    "RetryableStatus",
    "is_retryable",
    "make_retrying",
    "parse_retry_after",
]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retrying one call: attempts, total seconds, and backoff range."""

    max_attempts: int = 8
    max_elapsed: float = 120.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed < 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("retry times must not be negative")

    def backoff(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based): exponential, half jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        ceiling = float(ceiling)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class RetryableStatus(Exception):
    """A response whose status says "try again later"; carries what the Pod said."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


_RETRY_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be repeated."""
    return isinstance(exc, (RetryableStatus, *_RETRY_TRANSPORT_ERRORS))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value; ``None`` if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class _OutOfTime(stop_base):
    """Stop once ``max_elapsed`` seconds have passed since ``started`` (monotonic)."""

    def __init__(self, started: float, max_elapsed: float) -> None:
        self.started = started
        self.max_elapsed = max_elapsed

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() - self.started >= self.max_elapsed


def make_retrying(
    policy: RetryPolicy,
    *,
    replayable: bool,
    before_sleep: Callable[[RetryCallState], None],
    started: float,
) -> AsyncRetrying:
    """A tenacity controller for one call under ``policy``.

    A call whose body can't be produced twice (``replayable=False``) gets
    exactly one attempt.  ``started`` (``time.monotonic()``) is when the
    call's first attempt began: the time budget counts from there.
    """

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            delay = exc.retry_after
        else:
            delay = policy.backoff(state.attempt_number)
        remaining = policy.max_elapsed - (time.monotonic() - started)
        return max(0.0, min(delay, remaining))

    attempts = policy.max_attempts if replayable else 1
    return AsyncRetrying(
        sleep=anyio.sleep,
        stop=stop_after_attempt(attempts) | _OutOfTime(started, policy.max_elapsed),
        wait=wait,
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=False,
    )
