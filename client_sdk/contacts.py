"""Lookups of watched contacts answered in process, from what the watch delivered.

An app watches its contacts (to show who is online) and looks the same contacts up to
call them: without this, each such lookup is a round trip for an answer the watch already
holds. A watch's view is exactly as fresh as the last change it delivered, with one
exception: a renewal that changes nothing a watcher sees is not delivered (the supernode
drops it to spare watchers), so the lease end in the view is the one of the device's last
visible change. The cache therefore keeps, per device version ``(handle, device, seq)``,
the latest lease end any answer showed (a watch event, or a lookup from the server), and
answers from the view only while every device's lease, so known, still runs for longer
than ``margin_ms`` (the clock skew allowed between this device and the supernodes). When
one does not, the caller asks the server, whose answer renews what the cache knows.

So the cache never serves a record older than the last change its watch delivered (it is
the watch's view), nor a device whose known lease has ended. What it can miss is a change
still in flight to the watch (milliseconds), as any read from a lagging replica could.
Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from client_sdk.types import Presence

DeviceVersion = tuple[str, str, int]  # handle, device id, seq


class ContactsCache:
    """Lease ends learned per device version, and answers built from a watch's view."""

    def __init__(self, *, margin_ms: int, limit: int = 100_000) -> None:
        if margin_ms < 0:
            raise ValueError("margin_ms must not be negative")
        self._margin_ms = margin_ms
        self._limit = limit
        self._lease_ends: OrderedDict[DeviceVersion, int] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def learn(self, presence: Presence) -> None:
        """Remember the lease ends ``presence`` shows (an answer from the server)."""
        for device in presence.devices:
            key = (presence.handle, device.device_id, device.seq)
            known = self._lease_ends.get(key, 0)
            if device.expires_at_ms > known:
                self._lease_ends[key] = device.expires_at_ms
            self._lease_ends.move_to_end(key)
        while len(self._lease_ends) > self._limit:
            self._lease_ends.popitem(last=False)

    def answer(self, watched: Presence, now_ms: int) -> Presence | None:
        """``watched`` (a watch's view of one handle) with each device's latest known
        lease end, or None when any device's lease may have ended by now: ask the server."""
        horizon = now_ms + self._margin_ms
        devices = []
        for device in watched.devices:
            lease_end = max(
                device.expires_at_ms,
                self._lease_ends.get((watched.handle, device.device_id, device.seq), 0),
            )
            if lease_end <= horizon:
                self.misses += 1
                return None
            devices.append(
                device
                if lease_end == device.expires_at_ms
                else dataclasses.replace(device, expires_at_ms=lease_end)
            )
        self.hits += 1
        return Presence(watched.account, tuple(devices))
