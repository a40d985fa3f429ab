"""The SDK's public data types: frozen dataclasses and enums, never generated protobuf.

Apps keep these in their own state and compare them, so they are immutable (sequences are
tuples). Everything a lookup or watch returns has been verified first (see
``client_sdk.verify``): a ``Device`` exists only for a record whose signature checked out
against its account's pinned key.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class DeviceStatus(enum.Enum):
    ONLINE = "online"
    AWAY = "away"
    BUSY = "busy"


class TransportProtocol(enum.Enum):
    UDP = "udp"
    TCP = "tcp"


class CandidateType(enum.Enum):
    """ICE candidate types (RFC 8445): where an endpoint address comes from."""

    HOST = "host"
    SERVER_REFLEXIVE = "srflx"
    RELAY = "relay"


@dataclass(frozen=True)
class Endpoint:
    """An address a device can be reached at, as published in its signed record."""

    address: str
    port: int
    protocol: TransportProtocol = TransportProtocol.UDP
    type: CandidateType = CandidateType.HOST


@dataclass(frozen=True)
class Account:
    """The public part of an account; ``account_key`` is the raw Ed25519 public key."""

    handle: str
    account_key: bytes
    display_name: str = ""
    discoverable: bool = True
    created_at_ms: int = 0


@dataclass(frozen=True)
class Device:
    """A live device of a handle, from a record signed by the account key (verified).

    ``record`` and ``signature`` are the exact signed bytes, kept so the app can hand them to
    a peer or re-verify later; ``expires_at_ms`` and ``attached_supernode`` are the lease
    the supernode granted and are not covered by the signature.
    """

    handle: str
    device_id: str
    seq: int
    issued_at_ms: int
    ttl_seconds: int
    endpoints: tuple[Endpoint, ...]
    transport_key: bytes
    status: DeviceStatus
    capabilities: tuple[str, ...]
    expires_at_ms: int
    attached_supernode: str
    record: bytes = field(default=b"", repr=False)
    signature: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Presence:
    """One handle's account and its live devices (empty when offline), as of one read."""

    account: Account
    devices: tuple[Device, ...] = ()

    @property
    def handle(self) -> str:
        return self.account.handle

    def device(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.device_id == device_id), None)


@dataclass(frozen=True)
class SearchResult:
    """One discoverable account that matched a search, best match first.

    Search results are not pinned: search is discovery, and keys are pinned (and checked)
    when the app looks the handle up to reach it.
    """

    handle: str
    display_name: str
    account_key: bytes


@dataclass(frozen=True)
class Registration:
    """The lease the supernode granted to one of our devices (the latest renewal)."""

    device_id: str
    seq: int
    ttl_seconds: int
    expires_at_ms: int


class EventKind(enum.Enum):
    """What a watch event tells: the full state (SNAPSHOT) or one device's change."""

    SNAPSHOT = "snapshot"
    ONLINE = "online"
    UPDATED = "updated"
    OFFLINE = "offline"


class OfflineReason(enum.Enum):
    UNREGISTERED = "unregistered"
    EXPIRED = "expired"
    # Seen gone in a snapshot taken after a gap: the supernode no longer knows why.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class WatchPosition:
    """Where a watch stands in a supernode's change log; the epoch changes on restart."""

    epoch: str
    revision: int


@dataclass(frozen=True)
class PresenceEvent:
    """One event of a watch.

    SNAPSHOT: ``snapshot`` maps every watched handle that exists to its presence, and
    ``not_found`` lists those with no account. The first event of a watch is a snapshot
    with ``after_gap=False``. A later snapshot has ``after_gap=True``: the watch had to
    reconnect and could not resume gaplessly (typically the supernode restarted), so the
    app should replace its state; ``gap_changes`` lists how the new snapshot differs from
    the state the watch had delivered before, as ONLINE/UPDATED/OFFLINE events, so an app
    that only consumes per-device events misses nothing either.

    ONLINE / UPDATED: ``device`` is the new (verified) record. OFFLINE: ``reason`` says why.
    """

    kind: EventKind
    position: WatchPosition
    handle: str = ""
    device_id: str = ""
    device: Device | None = None
    reason: OfflineReason | None = None
    snapshot: Mapping[str, Presence] | None = None
    not_found: tuple[str, ...] = ()
    after_gap: bool = False
    gap_changes: tuple[PresenceEvent, ...] = ()
