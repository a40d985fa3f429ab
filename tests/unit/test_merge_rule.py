"""The device merge rule: ``(seq, tombstone over live, lease end)``, a total order.

The laws replication rests on: whatever set of versions a replica has seen, in whatever
order and however often, it keeps the same winner.
"""

import random
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from client_sdk.protocol.records import Version, supersedes

versions = st.builds(
    Version,
    seq=st.integers(min_value=1, max_value=6),
    tombstone=st.booleans(),
    expires_at_ms=st.integers(min_value=0, max_value=4),
)


def merge(stored: Version | None, incoming: Version) -> Version:
    """What a replica keeps after applying ``incoming`` on top of ``stored``."""
    return incoming if supersedes(incoming, stored) else stored  # type: ignore[return-value]


def merged(history: list[Version]) -> Version | None:
    return reduce(merge, history, None)


def test_higher_seq_wins_either_way() -> None:
    assert supersedes(Version(5, False, 0), Version(4, True, 99))
    assert not supersedes(Version(4, True, 99), Version(5, False, 0))


def test_a_tombstone_beats_the_live_record_of_its_own_seq() -> None:
    live, tombstone = Version(5, False, 1_000), Version(5, True, 10)
    assert supersedes(tombstone, live)
    assert not supersedes(live, tombstone)


def test_the_same_version_again_changes_nothing() -> None:
    assert not supersedes(Version(5, False, 7), Version(5, False, 7))
    assert supersedes(Version(1, False, 0), None)


@given(st.lists(versions, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_any_order_gives_the_same_winner(history: list[Version], rng: random.Random) -> None:
    shuffled = list(history)
    rng.shuffle(shuffled)
    assert merged(shuffled) == merged(history) == max(history)


@given(st.lists(versions, min_size=1, max_size=8), st.integers(min_value=1, max_value=3))
def test_applying_again_is_idempotent(history: list[Version], times: int) -> None:
    assert merged(history * times) == merged(history)


@given(versions, versions, versions)
def test_merge_is_associative_and_commutative(a: Version, b: Version, c: Version) -> None:
    assert merge(merge(merge(None, a), b), c) == merge(merge(merge(None, c), a), b)
    assert merge(merge(None, a), b) == merge(merge(None, b), a)


@given(st.lists(versions, min_size=1, max_size=8), st.lists(versions, min_size=1, max_size=8))
def test_replicas_that_exchange_everything_agree(left: list[Version], right: list[Version]) -> None:
    """Two replicas that saw different writes converge once each gets the other's winner."""
    a, b = merged(left), merged(right)
    assert a is not None and b is not None
    assert merge(a, b) == merge(b, a)


@given(versions, versions)
def test_exactly_one_of_two_different_versions_wins(a: Version, b: Version) -> None:
    """Trichotomy: two versions are the same write, or exactly one supersedes the other, so
    no two replicas can each keep their own version of a device."""
    if a == b:
        assert not supersedes(a, b) and not supersedes(b, a)
    else:
        assert supersedes(a, b) != supersedes(b, a)
    assert supersedes(a, None)
