"""Hinted handoff: writes a replica missed, kept in the store and replayed when it returns.

When a coordinator cannot reach a replica, the write is acknowledged by the others (W of
RF) and a hint is kept for the one that missed it, in the coordinator's own store, so it
survives the coordinator's restart. Hints are bounded: at most ``cap_per_target`` per
replica (the oldest go first) and at most ``max_age_ms`` old (one max lease TTL: after that
the lease they carry has ended, and the device has re-registered, which the merge rule
lets through anyway). Replay sends them in order through the normal merge (idempotent), so
a replay that races a newer write changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from supernode.errors import SupernodeError
from supernode.store import Store

log = logging.getLogger("supernode.cluster")

_BATCH = 100


@dataclass
class HintCounters:
    stored: int = 0
    replayed: int = 0
    dropped: int = 0  # over the cap, or too old


class HintBook:
    def __init__(
        self,
        store: Store,
        *,
        clock_ms: Callable[[], int],
        cap_per_target: int,
        max_age_ms: int,
    ) -> None:
        self._store = store
        self._clock_ms = clock_ms
        self.cap_per_target = cap_per_target
        self.max_age_ms = max_age_ms
        self.counters = HintCounters()
        counts = store.hint_counts()
        self.pending = {target: kept for target, (kept, _) in counts.items()}
        self._sequence = max((last for _, last in counts.values()), default=0)

    def add(self, target: str, write: bytes) -> None:
        self._sequence = max(self._sequence + 1, self._clock_ms() * 1000)
        self._store.put_hint(target, self._sequence, self._clock_ms(), write)
        self.pending[target] = self.pending.get(target, 0) + 1
        self.counters.stored += 1
        over = self.pending[target] - self.cap_per_target
        if over > 0:  # bounded: the oldest go first
            oldest = [sequence for sequence, _, _ in self._store.hints(target, over)]
            self._forget(target, oldest, dropped=True)

    def _forget(self, target: str, sequences: list[int], *, dropped: bool) -> None:
        if not sequences:
            return
        self._store.delete_hints(target, sequences)
        self.pending[target] = max(0, self.pending.get(target, 0) - len(sequences))
        if not self.pending[target]:
            del self.pending[target]
        if dropped:
            self.counters.dropped += len(sequences)
        else:
            self.counters.replayed += len(sequences)

    @property
    def total(self) -> int:
        return sum(self.pending.values())

    async def replay(self, target: str, send: Callable[[bytes], Awaitable[None]]) -> int:
        """Send ``target``'s hints in order until none is left or one fails; how many were
        delivered. A failure leaves the rest for the next attempt."""
        delivered = 0
        while target in self.pending:
            batch = self._store.hints(target, _BATCH)
            if not batch:
                self.pending.pop(target, None)
                break
            now_ms = self._clock_ms()
            stale = [seq for seq, created, _ in batch if now_ms - created > self.max_age_ms]
            self._forget(target, stale, dropped=True)
            skipped = set(stale)
            for sequence, _, write in batch:
                if sequence in skipped:
                    continue
                try:
                    await send(write)
                except SupernodeError as exc:
                    log.debug("hint replay to %s stopped: %s", target, exc)
                    return delivered
                self._forget(target, [sequence], dropped=False)
                delivered += 1
        return delivered
