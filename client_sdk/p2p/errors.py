"""Errors of peer-to-peer connections, in the SDK's one hierarchy."""

from client_sdk.errors import SupernodeError


class P2PError(SupernodeError):
    """A peer-to-peer connection could not be set up or broke."""


class PeerOffline(P2PError):
    """The peer's device is not listening for connections (offline or not reachable)."""


class PeerDeclined(P2PError):
    """The peer's device refused the connection."""


class PeerKeyMismatch(P2PError):
    """The peer presented a key other than the transport key in its signed record.

    Either the certificate in its answer does not carry that key, or the TLS handshake
    was answered by someone without it (a relay or supernode trying to intercept). Never
    retry this as a network error.
    """


class PeerAuthenticationFailed(P2PError):
    """The caller did not prove possession of its record's transport key."""


class PeerUnreachable(P2PError):
    """Neither the direct path nor the relay carried the connection in time."""


class OfferAnswered(P2PError):
    """An ``IncomingOffer`` was accepted or declined already: an offer is answered once."""


class PeerToPeerNotEnabled(P2PError):
    """``connect()`` or ``incoming()`` was called before ``enable_peer_to_peer()``.

    A mistake in the app's order of calls, not a network condition: retrying cannot help.
    Register the device with its transport key's public half, then call
    ``enable_peer_to_peer(device_id, transport_key)`` once, before connecting or listening.
    """
