"""Exponential backoff with jitter: how long to wait before the next attempt.

Pure: the caller passes the attempt number and a ``random.Random``, so schedules are tested
without clocks. Jitter keeps thousands of clients that lost the same supernode from
reconnecting in lockstep when it comes back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (0-based): ``initial * multiplier**n`` capped at ``maximum``,
    then scaled by a uniform factor in ``[1 - jitter, 1]``. The first retry is jittered too:
    clients that lost the same supernode at the same instant spread over half a window.

    After a refusal with a retry hint (an overloaded supernode, ``client_sdk.retry``), the
    delay is the hint or the jittered backoff, whichever is longer, and at most
    ``pushback_cap_seconds``: a broken or hostile hint cannot park the client for hours.

    Attributes:
        initial_seconds: the delay before the first retry (before jitter).
        maximum_seconds: the cap on any delay.
        multiplier: growth factor per retry.
        jitter: fraction of the delay randomly taken off (0: none, 1: up to all of it).
        pushback_cap_seconds: the longest wait a server's retry hint can impose.
    """

    initial_seconds: float = 0.1
    maximum_seconds: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    pushback_cap_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_seconds <= self.maximum_seconds:
            raise ValueError("backoff: need 0 < initial_seconds <= maximum_seconds")
        if self.multiplier < 1:
            raise ValueError("backoff: multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff: jitter must lie in [0, 1]")
        if self.pushback_cap_seconds <= 0:
            raise ValueError("backoff: pushback_cap_seconds must be positive")

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter; grows until it reaches ``maximum_seconds``."""
        # Compare exponents instead of computing multiplier**attempt for huge attempts.
        delay = self.initial_seconds
        for _ in range(max(0, attempt)):
            delay *= self.multiplier
            if delay >= self.maximum_seconds:
                return self.maximum_seconds
        return min(delay, self.maximum_seconds)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay before retry ``attempt`` (0-based), drawn from ``rng``."""
        ceiling = self.ceiling(attempt)
        return ceiling * (1.0 - self.jitter * rng.random())

    def after_pushback(self, pushback_ms: int, attempt: int, rng: random.Random) -> float:
        """The wait before retry ``attempt`` after a refusal that asked for ``pushback_ms``:
        ``min(cap, max(hint, jittered backoff))``."""
        hint = max(0, pushback_ms) / 1000.0
        return min(self.pushback_cap_seconds, max(hint, self.delay(attempt, rng)))
