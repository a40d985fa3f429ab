"""What apps embed to use a supernode.

``Client`` (async) and ``SyncClient`` (blocking, for scripts) act for one account: create
it, register the app's devices and keep their leases alive, look others up and watch them
(every record verified against the account key pinned on first use), search. ``Identity``
holds the account key. Errors are one hierarchy under ``SupernodeError``.

``DirectoryConnection`` is the thin gRPC layer underneath, in generated protobuf types.
"""

from client_sdk.backoff import Backoff
from client_sdk.client import Client
from client_sdk.config import ClientConfig
from client_sdk.errors import (
    AlreadyExists,
    Closed,
    InvalidArgument,
    KeyChanged,
    NotFound,
    PermissionDenied,
    RateLimited,
    SignatureError,
    Stale,
    SupernodeError,
    Unauthenticated,
    Unavailable,
)
from client_sdk.identity import Identity
from client_sdk.p2p.connection import PeerConnection, PeerIdentity
from client_sdk.p2p.connector import P2PSettings
from client_sdk.p2p.errors import (
    P2PError,
    PeerAuthenticationFailed,
    PeerDeclined,
    PeerKeyMismatch,
    PeerOffline,
    PeerUnreachable,
)
from client_sdk.pins import PinStore
from client_sdk.sync import SyncClient, SyncWatch
from client_sdk.transport import DirectoryConnection
from client_sdk.types import (
    Account,
    CandidateType,
    Device,
    DeviceStatus,
    Endpoint,
    EventKind,
    OfflineReason,
    Presence,
    PresenceEvent,
    Registration,
    SearchResult,
    TransportProtocol,
    WatchPosition,
)
from client_sdk.watch import Watch

__all__ = [
    "Account",
    "AlreadyExists",
    "Backoff",
    "CandidateType",
    "Client",
    "ClientConfig",
    "Closed",
    "Device",
    "DeviceStatus",
    "DirectoryConnection",
    "Endpoint",
    "EventKind",
    "Identity",
    "InvalidArgument",
    "KeyChanged",
    "NotFound",
    "OfflineReason",
    "P2PError",
    "P2PSettings",
    "PeerAuthenticationFailed",
    "PeerConnection",
    "PeerDeclined",
    "PeerIdentity",
    "PeerKeyMismatch",
    "PeerOffline",
    "PeerUnreachable",
    "PermissionDenied",
    "PinStore",
    "Presence",
    "PresenceEvent",
    "RateLimited",
    "Registration",
    "SearchResult",
    "SignatureError",
    "Stale",
    "SupernodeError",
    "SyncClient",
    "SyncWatch",
    "TransportProtocol",
    "Unauthenticated",
    "Unavailable",
    "Watch",
    "WatchPosition",
]
