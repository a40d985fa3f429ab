"""Monotonic reads: a client never sees a device's record go back to an older seq.

In a cluster, a lookup reads one replica (``Consistency.ONE``), and after a failover the new
node's replica may lag the one read before (it missed a write that the others acknowledged
and is still to get it from a hint). The client remembers the newest seq it has served per
device and, when a read would go backwards, reads again at ``Consistency.QUORUM``, which sees
every acknowledged write. Bounded: the least recently read devices are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from client_sdk.types import Presence


class MonotonicReads:
    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._newest: OrderedDict[tuple[str, str], int] = OrderedDict()

    def regressed(self, presence: Presence) -> bool:
        """Whether any device in ``presence`` is older than what this client served before
        (a device that is absent is not a regression: it may have gone offline)."""
        handle = presence.handle
        return any(
            device.seq < self._newest.get((handle, device.device_id), 0)
            for device in presence.devices
        )

    def remember(self, presence: Presence) -> None:
        handle = presence.handle
        for device in presence.devices:
            key = (handle, device.device_id)
            self._newest[key] = max(device.seq, self._newest.get(key, 0))
            self._newest.move_to_end(key)
        while len(self._newest) > self._limit:
            self._newest.popitem(last=False)
