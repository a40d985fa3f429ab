"""Per-key token buckets, bounded in memory, with an injected clock."""

from collections import OrderedDict
from collections.abc import Callable, Hashable


class TokenBuckets:
    """``rate`` tokens per second up to ``burst`` per key; the least recently seen keys are
    forgotten beyond ``max_keys`` (a forgotten key starts full again, which only helps the
    key, never an attacker who would need that key's session).

    :meth:`scale` shrinks rate and burst to a share of what was configured: a cluster of N
    nodes enforces 1/N of a cluster-wide limit on each (``supernode.rate``).
    """

    def __init__(
        self, *, rate: float, burst: float, clock: Callable[[], float], max_keys: int = 100_000
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate limit: need rate > 0 and burst > 0")
        self._configured = (rate, burst)
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def scale(self, share: float) -> None:
        """Enforce ``share`` (0-1] of the configured rate and burst (a burst of at least 1)."""
        rate, burst = self._configured
        self._rate = rate * share
        self._burst = max(1.0, burst * share)

    def _refilled(self, key: Hashable, now: float) -> float:
        tokens, last = self._buckets.pop(key, (self._burst, now))
        return min(self._burst, tokens + (now - last) * self._rate)

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens for ``key``; False (taking none) when it has fewer.

        A cost above the burst is taken as the whole burst: a request that large passes
        only with a full bucket, and empties it, rather than never passing at all.
        On every Lookup: one dict lookup, one move and one store (measured by
        ``benchmarks.abuse --only micro``)."""
        now = self._clock()
        buckets = self._buckets
        burst = self._burst
        entry = buckets.get(key)
        if entry is None:
            tokens = burst
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
        else:
            tokens = entry[0] + (now - entry[1]) * self._rate
            if tokens > burst:
                tokens = burst
            buckets.move_to_end(key)
        if cost > burst:
            cost = burst
        if tokens >= cost:
            buckets[key] = (tokens - cost, now)
            return True
        buckets[key] = (tokens, now)
        return False

    def has(self, key: Hashable) -> bool:
        """Whether ``key`` has a whole token, taking none (a lockout's check before the
        work whose failure :meth:`spend` then charges)."""
        entry = self._buckets.get(key)
        if entry is None:
            return True
        tokens, last = entry
        return tokens + (self._clock() - last) * self._rate >= 1.0

    def spend(self, key: Hashable, cost: float = 1.0) -> None:
        """Take ``cost`` tokens even if that leaves the bucket in debt (down to -burst):
        a failure is charged after the fact, and repeated failures lock out for longer."""
        now = self._clock()
        tokens = max(-self._burst, self._refilled(key, now) - cost)
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def retry_after(self, key: Hashable, cost: float = 1.0) -> float:
        """Seconds until ``key`` has ``cost`` tokens again (at most a full burst)."""
        entry = self._buckets.get(key)
        if entry is None:
            return 0.0
        tokens, last = entry
        tokens = min(self._burst, tokens + (self._clock() - last) * self._rate)
        return max(0.0, (min(cost, self._burst) - tokens) / self._rate)
