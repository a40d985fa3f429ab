"""What apps embed to use a supernode.

``Client`` (async) and ``SyncClient`` (blocking, for scripts) act for one account: create
it, register the app's devices and keep their leases alive, look others up and watch them
(every record verified against the account key pinned on first use), search. ``Identity``
holds the account key. Errors are one hierarchy under ``SupernodeError``.

No gRPC error ever reaches the app: every method raises ``SupernodeError`` subclasses
(``Unavailable`` when no supernode answered, ``Overloaded`` when one kept shedding load
after the SDK waited as it asked, ``Closed`` after ``close()``, the class for the server's
answer otherwise). Peer to peer (``enable_peer_to_peer``, ``connect``,
``incoming``) is in ``client_sdk.p2p``, re-exported here.

Everything exported is documented (``pydoc client_sdk.Client``, ``pydoc client_sdk.SyncClient``);
data classes and enums list their fields and members under ``Attributes:``.
``client_sdk.transport.DirectoryConnection``, the thin gRPC layer underneath (generated
protobuf types, raw gRPC errors), is for tools and tests, not apps.
"""

from client_sdk.backoff import Backoff
from client_sdk.client import Client, Routing
from client_sdk.config import ClientConfig
from client_sdk.errors import (
    AlreadyExists,
    CertificateMismatch,
    Closed,
    InvalidArgument,
    KeyChanged,
    NotFound,
    Overloaded,
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
    OfferAnswered,
    P2PError,
    PeerAuthenticationFailed,
    PeerDeclined,
    PeerKeyMismatch,
    PeerOffline,
    PeerToPeerNotEnabled,
    PeerUnreachable,
)
from client_sdk.p2p.offers import IncomingOffer
from client_sdk.p2p.sync import SyncIncoming, SyncOffer, SyncOffers, SyncPeerConnection, SyncStream
from client_sdk.pins import PinStore
from client_sdk.sync import SyncClient, SyncWatch
from client_sdk.tls import Tls
from client_sdk.types import (
    Account,
    CandidateType,
    Consistency,
    Device,
    DeviceStatus,
    Endpoint,
    EventKind,
    OfflineReason,
    Presence,
    PresenceEvent,
    PrivacySettings,
    Registration,
    SearchResult,
    TransportProtocol,
    Visibility,
    WatchPosition,
)
from client_sdk.watch import Watch
from client_sdk.write_log import WriteAttempt, WriteKind, WriteObserver

__all__ = [
    "Account",
    "AlreadyExists",
    "Backoff",
    "CandidateType",
    "CertificateMismatch",
    "Client",
    "ClientConfig",
    "Closed",
    "Consistency",
    "Device",
    "DeviceStatus",
    "Endpoint",
    "EventKind",
    "Identity",
    "IncomingOffer",
    "InvalidArgument",
    "KeyChanged",
    "NotFound",
    "OfferAnswered",
    "OfflineReason",
    "Overloaded",
    "P2PError",
    "P2PSettings",
    "PeerAuthenticationFailed",
    "PeerConnection",
    "PeerDeclined",
    "PeerIdentity",
    "PeerKeyMismatch",
    "PeerOffline",
    "PeerToPeerNotEnabled",
    "PeerUnreachable",
    "PermissionDenied",
    "PinStore",
    "Presence",
    "PresenceEvent",
    "PrivacySettings",
    "RateLimited",
    "Registration",
    "Routing",
    "SearchResult",
    "SignatureError",
    "Stale",
    "SupernodeError",
    "SyncClient",
    "SyncIncoming",
    "SyncOffer",
    "SyncOffers",
    "SyncPeerConnection",
    "SyncStream",
    "SyncWatch",
    "Tls",
    "TransportProtocol",
    "Unauthenticated",
    "Unavailable",
    "Visibility",
    "Watch",
    "WatchPosition",
    "WriteAttempt",
    "WriteKind",
    "WriteObserver",
]
