import pytest

from supernode.directory.lease import (
    LeasePolicy,
    check_issued_at,
    granted_ttl_seconds,
    lease_expiry_ms,
)
from supernode.errors import InvalidArgument

POLICY = LeasePolicy(
    min_ttl_seconds=10, max_ttl_seconds=600, default_ttl_seconds=60, max_clock_skew_seconds=30
)


@pytest.mark.parametrize(
    ("requested", "granted"), [(0, 60), (1, 10), (10, 10), (59, 59), (600, 600), (10**6, 600)]
)
def test_ttl_is_clamped_to_bounds_and_zero_means_default(requested: int, granted: int) -> None:
    assert granted_ttl_seconds(requested, POLICY) == granted


def test_issued_at_within_skew_is_accepted() -> None:
    now = 1_000_000_000
    for issued in (now, now - 30_000, now + 30_000):
        check_issued_at(issued, now, POLICY)


@pytest.mark.parametrize(("offset", "word"), [(-30_001, "past"), (30_001, "future")])
def test_issued_at_outside_skew_names_field_and_direction(offset: int, word: str) -> None:
    now = 1_000_000_000
    with pytest.raises(InvalidArgument, match=rf"record\.issued_at_ms: .* {word}"):
        check_issued_at(now + offset, now, POLICY)


def test_missing_issued_at_is_required() -> None:
    with pytest.raises(InvalidArgument, match="required"):
        check_issued_at(0, 1_000, POLICY)


def test_tombstones_outlive_the_replay_window() -> None:
    # A record accepted at T with issued_at = T + skew can be replayed until T + 2 * skew.
    assert POLICY.tombstone_retention_ms >= 2 * POLICY.max_clock_skew_seconds * 1000
    short = LeasePolicy(min_ttl_seconds=1, max_ttl_seconds=10, default_ttl_seconds=5)
    assert short.tombstone_retention_ms >= 2 * short.max_clock_skew_seconds * 1000


def test_tombstones_outlive_every_lease_they_superseded() -> None:
    # A replica that missed the removal may hold the live version until max TTL (+ skew).
    assert POLICY.tombstone_retention_ms >= (
        (POLICY.max_ttl_seconds + POLICY.max_clock_skew_seconds) * 1000
    )


def test_expiry_arithmetic() -> None:
    assert lease_expiry_ms(5_000, 7) == 12_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_ttl_seconds": 0},
        {"min_ttl_seconds": 100, "max_ttl_seconds": 50},
        {"default_ttl_seconds": 5000},
        {"max_clock_skew_seconds": 0},
    ],
)
def test_inconsistent_policies_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LeasePolicy(**kwargs)
