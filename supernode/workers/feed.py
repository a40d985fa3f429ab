"""The primary's change feed to its workers, as pure state.

Each committed write adds (sequence, changed view keys) to every follower. A follower that
is slower than the writes coalesces them: one pending sequence and a set of keys, so a
stream write carries all changes since the last one. A follower whose pending set outgrows
its limit switches to "reset" (drop every cached view), so memory stays bounded and a slow
worker still converges instead of being cut off.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Changes:
    sequence: int
    keys: frozenset[bytes]
    reset: bool


class Follower:
    def __init__(self, sequence: int, key_limit: int) -> None:
        self._key_limit = key_limit
        self._sequence = sequence
        self._keys: set[bytes] = set()
        self._reset = True  # a new follower may have missed anything before it joined
        self._pending = True
        self.ready = asyncio.Event()
        self.ready.set()

    def add(self, sequence: int, keys: list[bytes]) -> None:
        self._sequence = max(self._sequence, sequence)
        if not self._reset:
            self._keys.update(keys)
            if len(self._keys) > self._key_limit:
                self._reset, self._keys = True, set()
        self._pending = True
        self.ready.set()

    def take(self) -> Changes | None:
        """Everything pending as one message, or None if nothing is."""
        if not self._pending:
            return None
        changes = Changes(self._sequence, frozenset(self._keys), self._reset)
        self._keys, self._reset, self._pending = set(), False, False
        self.ready.clear()
        return changes


class ChangeFeed:
    def __init__(self, sequence: int, key_limit: int = 100_000) -> None:
        self.sequence = sequence
        self._key_limit = key_limit
        self._followers: set[Follower] = set()

    @property
    def followers(self) -> int:
        return len(self._followers)

    def publish(self, sequence: int, keys: list[bytes]) -> None:
        """Store.on_commit: called on the event-loop thread after every committed write."""
        self.sequence = sequence
        for follower in self._followers:
            follower.add(sequence, keys)

    def follow(self) -> Follower:
        follower = Follower(self.sequence, self._key_limit)
        self._followers.add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        self._followers.discard(follower)
