"""Per-key token buckets, bounded in memory, with an injected clock."""

from collections import OrderedDict
from collections.abc import Callable, Hashable


class TokenBuckets:
    """``rate`` tokens per second up to ``burst`` per key; the least recently seen keys are
    forgotten beyond ``max_keys`` (a forgotten key starts full again, which only helps the
    key, never an attacker who would need that key's session)."""

    def __init__(
        self, *, rate: float, burst: float, clock: Callable[[], float], max_keys: int = 100_000
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate limit: need rate > 0 and burst > 0")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens for ``key``; False (taking none) when it has fewer."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` has a token again."""
        tokens, _ = self._buckets.get(key, (self._burst, 0.0))
        return max(0.0, (1 - tokens) / self._rate)
