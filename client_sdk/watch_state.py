"""The watch protocol, client side, as a pure state machine: messages in, events out.

It tracks the position (epoch, revision) to resume from and the presence of every watched
handle as delivered so far, verifies every record before it turns into an event, drops
changes it has already delivered (a resumption may overlap), and, when the supernode answers
a reconnect with a fresh snapshot instead of a resumption, flags it ``after_gap`` and lists
how it differs from what the app had, so no change is silently lost. No I/O: the asyncio
shell (``client_sdk.watch``) feeds it and fetches unknown accounts when it asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from client_sdk.convert import reason_from_pb
from client_sdk.errors import SignatureError, SupernodeError
from client_sdk.pins import PinStore
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.types import (
    Account,
    Device,
    EventKind,
    OfflineReason,
    Presence,
    PresenceEvent,
    WatchPosition,
)
from client_sdk.verify import verify_device, verify_presence

_KIND = {
    pb.CHANGE_KIND_ONLINE: EventKind.ONLINE,
    pb.CHANGE_KIND_UPDATED: EventKind.UPDATED,
    pb.CHANGE_KIND_OFFLINE: EventKind.OFFLINE,
}


class WatchProtocolError(SupernodeError):
    """The supernode broke the watch protocol (a change before any snapshot, ...)."""


class WatchState:
    """What one watch knows: its handles, its position, and the presence it delivered."""

    def __init__(self, handles: Iterable[str], pins: PinStore) -> None:
        self.handles = frozenset(handles)
        if not self.handles:
            raise ValueError("handles: at least one handle to watch")
        self._pins = pins
        self.position: WatchPosition | None = None
        self._view: dict[str, Presence] = {}
        self._not_found: set[str] = set()
        self._synced = False  # a snapshot or resumption has started the current stream

    @property
    def view(self) -> Mapping[str, Presence]:
        """Presence of every watched handle that exists, as of the last event."""
        return MappingProxyType(self._view)

    def resume_from(self) -> tuple[str, int]:
        """The (epoch, revision) to send when (re)opening the stream; empty: snapshot."""
        if self.position is None:
            return "", 0
        return self.position.epoch, self.position.revision

    def stream_opened(self) -> None:
        """A new stream starts: it must begin with a snapshot or a resumption marker."""
        self._synced = False

    def stream_closed(self) -> None:
        """The stream ended: until the next one resumes, the view may miss changes."""
        self._synced = False

    @property
    def synced(self) -> bool:
        """Whether the view is current: a stream is open and has resumed or snapshotted."""
        return self._synced

    def unknown_account(self, message: pb.WatchEvent) -> str | None:
        """A handle whose account key is needed to verify ``message`` and is not known
        (it had no account at snapshot time); the shell fetches it, then calls
        :meth:`learn_account`."""
        if message.WhichOneof("event") != "change":
            return None
        handle = message.change.handle
        if handle in self.handles and handle not in self._view:
            return handle
        return None

    def learn_account(self, account: Account) -> bool:
        """Add a watched account created after the snapshot, or take its new key after a
        rotation (already verified and pinned); whether anything changed. Devices signed
        by the old key are kept until their change arrives (the app saw them)."""
        if account.handle not in self.handles:
            return False
        known = self._view.get(account.handle)
        if known is None:
            self._view[account.handle] = Presence(account)
            self._not_found.discard(account.handle)
            return True
        if known.account.account_key == account.account_key:
            return False
        self._view[account.handle] = Presence(account, known.devices)
        return True

    def apply(self, message: pb.WatchEvent) -> list[PresenceEvent]:
        """The events ``message`` means for the app (possibly none)."""
        which = message.WhichOneof("event")
        if which == "snapshot":
            return [self._snapshot(message)]
        if message.resumed:
            if self.position is None or message.epoch != self.position.epoch:
                raise WatchProtocolError("watch: resumed a position this client never had")
            self._synced = True
            return []
        if which == "change":
            return self._change(message)
        return []

    def _snapshot(self, message: pb.WatchEvent) -> PresenceEvent:
        view: dict[str, Presence] = {}
        for entry in message.snapshot.handles:
            handle = entry.account.handle
            if handle not in self.handles:
                raise SignatureError(f"watch: snapshot has {handle!r}, which is not watched")
            presence = verify_presence(entry, self._pins, handle)
            view[handle] = Presence(presence.account, _sorted(presence.devices))
        position = WatchPosition(message.epoch, message.revision)
        after_gap = self.position is not None
        gap_changes = diff_views(self._view, view, position) if after_gap else ()
        self._view = view
        self._not_found = set(message.snapshot.not_found) & self.handles
        self.position = position
        self._synced = True
        return PresenceEvent(
            EventKind.SNAPSHOT,
            position,
            snapshot=MappingProxyType(dict(view)),
            not_found=tuple(sorted(self._not_found)),
            after_gap=after_gap,
            gap_changes=gap_changes,
        )

    def _change(self, message: pb.WatchEvent) -> list[PresenceEvent]:
        if not self._synced or self.position is None:
            raise WatchProtocolError("watch: a change arrived before the snapshot")
        if message.epoch != self.position.epoch:
            raise WatchProtocolError("watch: the epoch changed within one stream")
        if message.revision <= self.position.revision:
            return []  # delivered before the reconnect
        change = message.change
        kind = _KIND.get(change.kind)
        presence = self._view.get(change.handle)
        if kind is None or presence is None:
            raise WatchProtocolError(
                f"watch: a change of kind {change.kind} for {change.handle!r}, which is "
                "not a watched account"
            )
        position = WatchPosition(message.epoch, message.revision)
        others = tuple(d for d in presence.devices if d.device_id != change.device_id)
        if kind is EventKind.OFFLINE:
            self._view[change.handle] = Presence(presence.account, others)
            event = PresenceEvent(
                kind,
                position,
                handle=change.handle,
                device_id=change.device_id,
                reason=reason_from_pb(change.reason),
            )
        else:
            device = verify_device(
                change.device, presence.account.account_key, change.handle, change.device_id
            )
            self._view[change.handle] = Presence(presence.account, _sorted((*others, device)))
            event = PresenceEvent(
                kind, position, handle=change.handle, device_id=change.device_id, device=device
            )
        self.position = position
        return [event]


def _sorted(devices: Iterable[Device]) -> tuple[Device, ...]:
    return tuple(sorted(devices, key=lambda d: d.device_id))


def diff_views(
    old: Mapping[str, Presence], new: Mapping[str, Presence], position: WatchPosition
) -> tuple[PresenceEvent, ...]:
    """The device events that turn ``old`` into ``new``: what happened during a gap.

    A device that is new is ONLINE, one with another record that shows something else
    (``visible``) is UPDATED, one that is gone is OFFLINE with reason UNKNOWN (the snapshot
    does not say why). A renewal that changed nothing visible is no event, as on a live
    stream, where the supernode does not send it.
    """
    events: list[PresenceEvent] = []
    for handle in sorted(set(old) | set(new)):
        before = {d.device_id: d for d in old[handle].devices} if handle in old else {}
        after = {d.device_id: d for d in new[handle].devices} if handle in new else {}
        for device_id in sorted(set(before) | set(after)):
            was, now = before.get(device_id), after.get(device_id)
            if now is None:
                events.append(
                    PresenceEvent(
                        EventKind.OFFLINE,
                        position,
                        handle=handle,
                        device_id=device_id,
                        reason=OfflineReason.UNKNOWN,
                    )
                )
            elif was is None or (was.seq != now.seq and visible(was) != visible(now)):
                kind = EventKind.ONLINE if was is None else EventKind.UPDATED
                events.append(
                    PresenceEvent(kind, position, handle=handle, device_id=device_id, device=now)
                )
    return tuple(events)


def visible(device: Device) -> tuple[object, ...]:
    """What a watcher sees of a device: a new record that keeps all of it is a renewal."""
    return (
        device.endpoints,
        device.transport_key,
        device.status,
        device.capabilities,
        device.attached_supernode,
    )
