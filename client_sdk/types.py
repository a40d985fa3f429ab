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


class Consistency(enum.Enum):
    """How many replicas a lookup reads, in a cluster (a node alone has one copy).

    Attributes:
        ONE: one replica: the fastest answer; a write acknowledged a moment ago through
            another node may not be there yet.
        QUORUM: a majority of the replicas, the newest version of each device: every write
            acknowledged before the lookup began is seen (costs a round trip to each).
    """

    ONE = "one"
    QUORUM = "quorum"


class Visibility(enum.Enum):
    """Who may see an account's devices and send it offers (``Client.set_privacy``).

    A refused caller sees the account as offline (no devices, "not listening"), never an
    error that would tell it it was refused. The account itself always sees its devices.

    Attributes:
        EVERYONE: any account but the blocked ones (the default).
        CONTACTS: only the handles in ``PrivacySettings.allowed``.
        NOBODY: no other account; search does not show it either.
    """

    EVERYONE = "everyone"
    CONTACTS = "contacts"
    NOBODY = "nobody"


@dataclass(frozen=True)
class PrivacySettings:
    """An account's privacy, as the supernode enforces it.

    Attributes:
        visibility: who may see the account (``Visibility``).
        allowed: the contacts who may see it when ``visibility`` is ``CONTACTS``.
        blocked: accounts that never see it, whatever ``visibility`` says.
        seq: the settings' version (0: never set).
    """

    visibility: Visibility = Visibility.EVERYONE
    allowed: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()
    seq: int = 0


class DeviceStatus(enum.Enum):
    """What a device says about its user, signed in its record (``update_status``).

    Attributes:
        ONLINE: available.
        AWAY: idle or locked; reachable, a person may not answer soon.
        BUSY: reachable, but do not disturb.
    """

    ONLINE = "online"
    AWAY = "away"
    BUSY = "busy"


class TransportProtocol(enum.Enum):
    """The transport of an ``Endpoint``.

    Attributes:
        UDP: datagrams (what ICE and QUIC use).
        TCP: a stream endpoint.
    """

    UDP = "udp"
    TCP = "tcp"


class CandidateType(enum.Enum):
    """ICE candidate types (RFC 8445): where an endpoint address comes from.

    Attributes:
        HOST: an address of the device's own interface.
        SERVER_REFLEXIVE: the device's address as a STUN server saw it (its NAT's outside).
        RELAY: an address on a relay that forwards to the device.
    """

    HOST = "host"
    SERVER_REFLEXIVE = "srflx"
    RELAY = "relay"


@dataclass(frozen=True)
class Endpoint:
    """An address a device can be reached at, as published in its signed record.

    Attributes:
        address: IPv4 or IPv6 address, as text.
        port: UDP or TCP port.
        protocol: the transport at that port.
        type: where the address comes from (host, server reflexive, relay).
    """

    address: str
    port: int
    protocol: TransportProtocol = TransportProtocol.UDP
    type: CandidateType = CandidateType.HOST


@dataclass(frozen=True)
class Account:
    """The public part of an account (its key verified against the pin for its handle).

    Attributes:
        handle: the account's unique name.
        account_key: the raw 32-byte Ed25519 public key that signs its records.
        display_name: free text shown to people; not unique.
        discoverable: whether ``search`` finds the account (lookup by handle always works).
        created_at_ms: when the account was created (Unix milliseconds, client-signed).
    """

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

    Attributes:
        handle: the account the device belongs to.
        device_id: the device's name within the account.
        seq: the record's sequence number; a newer record has a higher one.
        issued_at_ms: when the device signed the record (Unix milliseconds).
        ttl_seconds: the lease the device asked for.
        endpoints: addresses the device published.
        transport_key: raw Ed25519 public key its peer-to-peer (QUIC) endpoint presents.
        status: online, away or busy.
        capabilities: free-form feature tags the app publishes (e.g. "audio").
        expires_at_ms: when the lease ends unless renewed (set by the supernode).
        attached_supernode: the supernode holding the lease (set by the supernode).
        record: the signed record bytes, exactly as signed.
        signature: the account key's Ed25519 signature over ``record``.
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
    """One handle's account and its live devices (empty when offline), as of one read.

    Attributes:
        account: the verified account.
        devices: its live devices, each record verified.
    """

    account: Account
    devices: tuple[Device, ...] = ()

    @property
    def handle(self) -> str:
        """The account's handle."""
        return self.account.handle

    def device(self, device_id: str) -> Device | None:
        """The live device ``device_id``, or ``None`` if it is not online."""
        return next((d for d in self.devices if d.device_id == device_id), None)


@dataclass(frozen=True)
class SearchResult:
    """One discoverable account that matched a search, best match first.

    Search results are not pinned: search is discovery, and keys are pinned (and checked)
    when the app looks the handle up to reach it.

    Attributes:
        handle: the account's handle.
        display_name: its display name.
        account_key: its raw Ed25519 public key (not yet checked against a pin).
    """

    handle: str
    display_name: str
    account_key: bytes


@dataclass(frozen=True)
class Registration:
    """The lease the supernode granted to one of our devices (the latest renewal).

    Attributes:
        device_id: our device.
        seq: the sequence number of the record registered.
        ttl_seconds: the lease granted (the supernode clamps what was asked).
        expires_at_ms: when it ends unless renewed (Unix milliseconds; the SDK renews).
    """

    device_id: str
    seq: int
    ttl_seconds: int
    expires_at_ms: int


class EventKind(enum.Enum):
    """What a watch event tells: the full state (SNAPSHOT) or one device's change.

    Attributes:
        SNAPSHOT: the presence of every watched handle (first, and after a gap).
        ONLINE: a device came online (a new record).
        UPDATED: an online device published a new record (status, endpoints, ...).
        OFFLINE: a device went away; the event's ``reason`` says how.
    """

    SNAPSHOT = "snapshot"
    ONLINE = "online"
    UPDATED = "updated"
    OFFLINE = "offline"


class OfflineReason(enum.Enum):
    """Why a device went offline: told apart so an app can say "signed off" rather than
    "lost connection", or retry a peer that only dropped off the network.

    Attributes:
        UNREGISTERED: the device said goodbye (``unregister_device``, or its client
            closed): it is gone on purpose.
        EXPIRED: its lease ran out unrenewed: the app crashed, or the device lost its
            network. It may well come back.
        UNKNOWN: seen gone in a snapshot taken after a gap; the supernode no longer
            knows why.
    """

    UNREGISTERED = "unregistered"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class WatchPosition:
    """Where a watch stands in a supernode's change log; the epoch changes on restart.

    Attributes:
        epoch: the change log's identity; a new one means history was lost (a restart).
        revision: the last change delivered, within the epoch.
    """

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

    Attributes:
        kind: what the event tells (see ``EventKind``).
        position: the change-log position after this event.
        handle: the handle that changed (ONLINE, UPDATED, OFFLINE).
        device_id: the device that changed (ONLINE, UPDATED, OFFLINE).
        device: the new verified record (ONLINE, UPDATED).
        reason: why the device went offline (OFFLINE).
        snapshot: handle -> presence of every watched handle that exists (SNAPSHOT).
        not_found: watched handles with no account (SNAPSHOT).
        after_gap: True for a snapshot that replaces state after an unresumable
            reconnect (SNAPSHOT).
        gap_changes: how that snapshot differs from what was delivered before, as
            ONLINE / UPDATED / OFFLINE events (SNAPSHOT after a gap).
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
