"""Backoff schedule, renewal timing, seq and token refresh: pure functions of time and rng."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.backoff import Backoff
from client_sdk.timing import (
    RENEW_WINDOW,
    next_renewal_delay,
    next_seq,
    renewal_delay,
    retry_delay,
    token_refresh_at_ms,
)


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial_seconds=0.1, maximum_seconds=1.0, multiplier=2.0)
    assert [backoff.ceiling(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.ceiling(10_000) == 1.0  # no overflow for absurd attempt counts


def test_backoff_without_jitter_is_the_ceiling() -> None:
    backoff = Backoff(initial_seconds=0.5, maximum_seconds=4.0, jitter=0.0)
    rng = random.Random(1)
    assert [backoff.delay(n, rng) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_backoff_schedule_is_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(7)) for n in range(8)]
    second = [backoff.delay(n, random.Random(7)) for n in range(8)]
    assert first == second


@given(attempt=st.integers(0, 100), seed=st.integers(), jitter=st.floats(0, 1))
def test_backoff_delay_lies_within_the_jitter_band(attempt: int, seed: int, jitter: float) -> None:
    backoff = Backoff(initial_seconds=0.1, maximum_seconds=5.0, jitter=jitter)
    delay = backoff.delay(attempt, random.Random(seed))
    ceiling = backoff.ceiling(attempt)
    assert ceiling * (1 - jitter) - 1e-12 <= delay <= ceiling


def test_jitter_spreads_clients_apart() -> None:
    backoff = Backoff()
    delays = {round(backoff.delay(3, random.Random(seed)), 6) for seed in range(50)}
    assert len(delays) > 40


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_seconds": 0},
        {"initial_seconds": 2, "maximum_seconds": 1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@given(ttl=st.integers(1, 3600), seed=st.integers())
def test_renewal_happens_within_the_window_of_the_granted_ttl(ttl: int, seed: int) -> None:
    delay = renewal_delay(ttl, random.Random(seed))
    low, high = RENEW_WINDOW
    assert ttl * low <= delay <= ttl * high


def test_renewals_of_devices_registered_together_spread_out() -> None:
    delays = {renewal_delay(60, random.Random(seed)) for seed in range(20)}
    assert max(delays) - min(delays) > 5  # seconds apart within a 12 s window


def test_renewal_window_must_leave_room_before_expiry() -> None:
    with pytest.raises(ValueError):
        renewal_delay(60, random.Random(), window=(0.5, 1.0))


def test_retry_after_failure_never_waits_past_the_lease() -> None:
    now = 1_000_000
    assert retry_delay(5.0, expires_at_ms=now + 2_000, now_ms=now) == pytest.approx(1.95)
    assert retry_delay(0.4, expires_at_ms=now + 2_000, now_ms=now) == 0.4
    # Lease already over (or none yet): plain backoff.
    assert retry_delay(3.0, expires_at_ms=now - 1, now_ms=now) == 3.0
    assert retry_delay(3.0, expires_at_ms=None, now_ms=now) == 3.0


def test_a_lease_renews_on_schedule_and_retries_failures_before_it_ends() -> None:
    backoff = Backoff(initial_seconds=1.0, maximum_seconds=8.0, jitter=0.0)
    now = 5_000_000

    def delay(failures: int, ttl: int | None = 10, expires_in_ms: int | None = 10_000) -> float:
        return next_renewal_delay(
            granted_ttl_seconds=ttl,
            expires_at_ms=None if expires_in_ms is None else now + expires_in_ms,
            failures=failures,
            now_ms=now,
            backoff=backoff,
            rng=random.Random(3),
        )

    assert 5.0 <= delay(0) <= 7.0  # healthy: within the renewal window
    assert [delay(n, expires_in_ms=None) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert delay(4, expires_in_ms=3_000) == pytest.approx(2.95)  # one try before it lapses
    assert delay(0, ttl=None, expires_in_ms=None) == 1.0  # never registered: just back off


def test_seq_follows_the_clock_and_never_repeats() -> None:
    assert next_seq(0, 1_700_000_000_000) == 1_700_000_000_000
    # Two records in the same millisecond, or a clock that stepped back: still increasing.
    assert next_seq(1_700_000_000_000, 1_700_000_000_000) == 1_700_000_000_001
    assert next_seq(1_700_000_000_500, 1_700_000_000_000) == 1_700_000_000_501


def test_a_restarted_app_outruns_its_previous_seq_without_state() -> None:
    before_restart = next_seq(next_seq(0, 1_000), 1_000)
    after_restart = next_seq(0, 1_005)
    assert after_restart > before_restart


def test_token_refreshed_a_margin_before_expiry() -> None:
    hour = 3_600_000
    assert token_refresh_at_ms(0, hour, margin_ms=60_000) == hour - 60_000


def test_short_lived_token_refreshed_halfway() -> None:
    assert token_refresh_at_ms(0, 10_000, margin_ms=60_000) == 5_000
