"""Monotonic reads and read-your-writes: a client never sees a device's record go back to an
older seq, nor its own acknowledged writes undone.

In a cluster, a lookup reads one replica (``Consistency.ONE``), and after a failover (or
with the ring-aware routing, which spreads a handle's reads over its replicas) that replica
may lag the one read before: it missed a write the others acknowledged and is still to get
it from a hint. The client remembers the newest seq it has served per device, and its own
acknowledged writes (told by :class:`OwnWrites`): a registered device it expects present at
that seq or newer, an unregistered one it expects gone. When a read contradicts either, the
client reads again at ``Consistency.QUORUM``, which sees every acknowledged write, and takes
that answer as settled (a device of ours that a majority lacks did go: its lease ended, or
another client of the account removed it). Bounded: the least recently read devices are
forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from client_sdk.errors import SupernodeError
from client_sdk.types import Presence
from client_sdk.write_log import WriteAttempt, WriteKind, WriteObserver

Device = tuple[str, str]  # handle, device id


class MonotonicReads:
    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._newest: OrderedDict[Device, int] = OrderedDict()
        self._present: dict[Device, int] = {}  # our registered devices: at least this seq
        self._gone: dict[Device, int] = {}  # our unregistered devices: no record up to seq

    def regressed(self, presence: Presence) -> bool:
        """Whether ``presence`` is older than what this client served or wrote before (a
        device absent is a regression only if it is one we registered and did not remove)."""
        handle = presence.handle
        served = {device.device_id: device.seq for device in presence.devices}
        if any(seq < self._newest.get((handle, d), 0) for d, seq in served.items()):
            return True
        if any(seq <= self._gone.get((handle, d), 0) for d, seq in served.items()):
            return True
        return any(h == handle and d not in served for h, d in self._present)

    def remember(self, presence: Presence, *, settled: bool = False) -> None:
        """Serve ``presence``; ``settled``: it was read at QUORUM, so it is what the
        replicas hold, and our expectations it contradicts are dropped."""
        handle = presence.handle
        served = {device.device_id: device.seq for device in presence.devices}
        for device_id, seq in served.items():
            key = (handle, device_id)
            self._newest[key] = max(seq, self._newest.get(key, 0))
            self._newest.move_to_end(key)
        while len(self._newest) > self._limit:
            self._newest.popitem(last=False)
        if settled:
            for key in [k for k in self._present if k[0] == handle and k[1] not in served]:
                del self._present[key]
            for key in [k for k in self._gone if k[0] == handle and k[1] in served]:
                del self._gone[key]

    def wrote(self, handle: str, device_id: str, seq: int) -> None:
        """Our registration of ``device_id`` at ``seq`` was acknowledged."""
        key = (handle, device_id)
        if seq <= self._gone.get(key, 0):
            return  # our own later tombstone covers it
        self._gone.pop(key, None)
        self._present[key] = max(seq, self._present.get(key, 0))
        self._newest[key] = max(seq, self._newest.get(key, 0))
        self._newest.move_to_end(key)

    def removed(self, handle: str, device_id: str, seq: int) -> None:
        """Our unregistration of ``device_id``, covering every record up to ``seq``, was
        acknowledged."""
        key = (handle, device_id)
        self._present.pop(key, None)
        self._gone[key] = max(seq, self._gone.get(key, 0), self._newest.get(key, 0))


class OwnWrites:
    """The write observer a client always has: tells its :class:`MonotonicReads` of every
    acknowledged write, then the app's observer (if any) of everything."""

    def __init__(self, reads: MonotonicReads, app: WriteObserver | None) -> None:
        self._reads = reads
        self._app = app

    def write_sent(self, attempt: WriteAttempt) -> None:
        if self._app is not None:
            self._app.write_sent(attempt)

    def write_acknowledged(self, attempt: WriteAttempt, expires_at_ms: int | None) -> None:
        if attempt.kind is WriteKind.REGISTER:
            self._reads.wrote(attempt.handle, attempt.device_id, attempt.seq)
        else:
            self._reads.removed(attempt.handle, attempt.device_id, attempt.seq)
        if self._app is not None:
            self._app.write_acknowledged(attempt, expires_at_ms)

    def write_failed(self, attempt: WriteAttempt, error: SupernodeError) -> None:
        if self._app is not None:
            self._app.write_failed(attempt, error)
