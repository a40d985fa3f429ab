"""When the client acts on its own: lease renewal, record sequence numbers, token refresh.

Pure functions of times and a ``random.Random``; the client's background tasks only sleep
for what these return, so the rules are tested without waiting.
"""

from __future__ import annotations

import random

from client_sdk.backoff import Backoff

# Renew between these fractions of the granted TTL: late enough not to waste calls, early
# enough that a renewal can fail and be retried (with backoff) before the lease ends.
RENEW_WINDOW = (0.5, 0.7)


def renewal_delay(
    granted_ttl_seconds: float,
    rng: random.Random,
    window: tuple[float, float] = RENEW_WINDOW,
) -> float:
    """Seconds from a successful (re)registration to the next renewal.

    Jittered within ``window`` so devices registered together (say, after a supernode
    restart) do not renew together forever after.
    """
    low, high = window
    if not 0 < low <= high < 1:
        raise ValueError("renewal window: need 0 < low <= high < 1")
    return granted_ttl_seconds * rng.uniform(low, high)


def retry_delay(
    backoff_delay: float, expires_at_ms: int | None, now_ms: int, minimum: float = 0.05
) -> float:
    """Delay before retrying a failed renewal: the backoff, but never past the moment the
    current lease ends (one last try just before it lapses beats one just after)."""
    if expires_at_ms is None:
        return backoff_delay
    remaining = (expires_at_ms - now_ms) / 1000.0
    if remaining <= minimum:
        return backoff_delay
    return max(minimum, min(backoff_delay, remaining - minimum))


def next_renewal_delay(
    *,
    granted_ttl_seconds: int | None,
    expires_at_ms: int | None,
    failures: int,
    now_ms: int,
    backoff: Backoff,
    rng: random.Random,
    window: tuple[float, float] = RENEW_WINDOW,
    pushback_ms: int | None = None,
) -> float:
    """How long a device lease waits before its next registration attempt.

    After a success (``failures == 0``): a jittered fraction of the granted TTL. After
    ``failures`` failed attempts in a row: the backoff for that many, cut short so that one
    more attempt happens before the current lease (if any) ends. When the last failure was
    an overloaded supernode's refusal with a hint (``pushback_ms``), never sooner than the
    hint (capped): the lease may lapse, but coming back early would only be refused again
    and add to the storm that caused the refusal.
    """
    if failures == 0 and granted_ttl_seconds is not None:
        return renewal_delay(granted_ttl_seconds, rng, window)
    attempt = max(0, failures - 1)
    delay = retry_delay(backoff.delay(attempt, rng), expires_at_ms, now_ms)
    if pushback_ms is None:
        return delay
    return max(delay, backoff.after_pushback(pushback_ms, attempt, rng))


def next_seq(last_seq: int, now_ms: int) -> int:
    """The ``seq`` of the next record of a device: strictly above the last one we used, and
    at least the wall clock in milliseconds.

    The supernode refuses any seq not above the highest it has seen for the device, even
    after an unregister (tombstones keep it). Time-based seqs keep working across app
    restarts with no local state, because the clock has moved on since the last record.
    """
    return max(last_seq + 1, now_ms)


def token_refresh_at_ms(obtained_at_ms: int, expires_at_ms: int, margin_ms: int) -> int:
    """When to log in again: ``margin_ms`` before expiry, or halfway through the token's
    life if that is sooner (a short-lived token would otherwise be refreshed on every call)."""
    lifetime = max(0, expires_at_ms - obtained_at_ms)
    return expires_at_ms - min(margin_ms, lifetime // 2)
