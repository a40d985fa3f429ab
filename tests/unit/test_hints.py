"""Hinted handoff over a real store: bounded, oldest first, survives a reopen, replays in
order and stops at the first failure."""

import asyncio
from pathlib import Path

from supernode.cluster.hints import HintBook
from supernode.errors import Unavailable
from supernode.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def book(store: Store, clock: Clock, cap: int = 3, max_age_ms: int = 10_000) -> HintBook:
    return HintBook(store, clock_ms=clock, cap_per_target=cap, max_age_ms=max_age_ms)


def test_hints_are_capped_per_replica_oldest_dropped_first(tmp_path: Path) -> None:
    store, clock = Store(tmp_path / "db", block_cache_bytes=1 << 20), Clock()
    hints = book(store, clock)
    for n in range(5):
        hints.add("b", f"w{n}".encode())
    hints.add("c", b"other")
    assert hints.pending == {"b": 3, "c": 1} and hints.counters.dropped == 2
    assert [w for _, _, w in store.hints("b", 10)] == [b"w2", b"w3", b"w4"]
    store.close()


def test_hints_survive_a_restart_and_new_ones_sort_after_them(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    book(store, clock).add("b", b"first")
    store.close()
    clock.now -= 500  # the clock stepped back: order must still hold
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    reopened = book(store, clock)
    assert reopened.pending == {"b": 1}
    reopened.add("b", b"second")
    assert [w for _, _, w in store.hints("b", 10)] == [b"first", b"second"]
    store.close()


def test_replay_sends_in_order_stops_at_a_failure_and_drops_the_too_old(tmp_path: Path) -> None:
    store, clock = Store(tmp_path / "db", block_cache_bytes=1 << 20), Clock()
    hints = book(store, clock, cap=10, max_age_ms=1_000)
    hints.add("b", b"old")
    clock.now += 2_000
    for write in (b"one", b"two", b"three"):
        hints.add("b", write)
    sent: list[bytes] = []
    failures = [Unavailable("b went away")]  # the first attempt at "three" fails

    async def flaky(write: bytes) -> None:
        if write == b"three" and failures:
            raise failures.pop()
        sent.append(write)

    assert asyncio.run(hints.replay("b", flaky)) == 2
    assert sent == [b"one", b"two"] and hints.pending == {"b": 1}
    assert hints.counters.dropped == 1 and hints.counters.replayed == 2
    assert asyncio.run(hints.replay("b", flaky)) == 1
    assert sent == [b"one", b"two", b"three"] and hints.pending == {} and hints.total == 0
    assert store.hints("b", 10) == []
    store.close()
