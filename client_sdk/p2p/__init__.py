"""Peer-to-peer connections: ICE (aioice) and the supernode relay as datagram paths, QUIC
(aioquic, sans-IO) over whichever path wins, peers authenticated by the transport keys in
their signed device records. The supernode routes signaling and, as a last resort,
ciphertext; it can neither read nor hijack a connection.

After ``Client.enable_peer_to_peer``, ``connect`` and ``incoming`` give the ``PeerConnection``
here; ``SyncClient`` returns its blocking facade ``SyncPeerConnection`` (streams:
``SyncStream``; listening: ``SyncIncoming``). Failures are ``P2PError`` subclasses.
"""

from client_sdk.p2p.connection import PeerConnection, PeerIdentity
from client_sdk.p2p.connector import P2PSettings
from client_sdk.p2p.errors import (
    P2PError,
    PeerAuthenticationFailed,
    PeerDeclined,
    PeerKeyMismatch,
    PeerOffline,
    PeerToPeerNotEnabled,
    PeerUnreachable,
)
from client_sdk.p2p.sync import SyncIncoming, SyncPeerConnection, SyncStream

__all__ = [
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
    "SyncIncoming",
    "SyncPeerConnection",
    "SyncStream",
]
