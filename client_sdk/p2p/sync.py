"""Peer connections for blocking code: what ``SyncClient.connect`` and ``incoming`` return.

A ``PeerConnection`` lives in the SDK's event loop (its QUIC session, paths and streams
are asyncio objects, not thread-safe); these facades hand every operation over to that
loop and wait for it, with an optional ``timeout`` wherever the peer decides when the
answer comes. Once their ``SyncClient`` is closed the loop is gone, and every operation
raises ``Closed``.
"""

from __future__ import annotations

import asyncio

from client_sdk.blocking import BlockingIterator, LoopThread
from client_sdk.p2p.connection import PeerConnection, PeerIdentity
from client_sdk.p2p.offers import IncomingOffer
from client_sdk.p2p.path_policy import PathChange
from client_sdk.p2p.quic import QuicStreamWriter


class SyncStream:
    """One reliable, ordered QUIC stream to a peer, both directions, blocking.

    ``read`` returns what the peer sent (``b""`` once it finished its side);
    ``write`` returns when the data is handed to QUIC within its flow-control window;
    ``write_eof`` finishes our side (the peer's ``read()`` then returns).
    """

    def __init__(
        self, loop: LoopThread, reader: asyncio.StreamReader, writer: QuicStreamWriter
    ) -> None:
        self._loop = loop
        self._reader = reader
        self._writer = writer

    def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes (``-1``: everything until the peer's end of stream)."""
        return self._loop.run(self._reader.read(n), timeout)

    def readexactly(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        return self._loop.run(self._reader.readexactly(n), timeout)

    def write(self, data: bytes) -> None:
        """Send ``data`` on the stream, waiting while the peer's window is full."""

        async def write() -> None:
            self._writer.write(data)
            await self._writer.drain()

        self._loop.run(write())

    def write_eof(self) -> None:
        """Finish our side of the stream; the peer reads to its end."""
        self._loop.call(self._writer.write_eof)

    def close(self) -> None:
        """Same as :meth:`write_eof` (what the peer already sent can still be read)."""
        self.write_eof()


class SyncPeerConnection:
    """A ``PeerConnection`` for blocking code: streams, datagrams, close.

    ``with client.connect("bob") as conn: stream = conn.open_stream(); ...``. The same
    connection as the async one (``connection``), with the same authenticated ``peer``;
    it keeps working in the background between calls.

    Attributes:
        connection: the async ``PeerConnection`` underneath (use it only from the loop).
    """

    def __init__(self, loop: LoopThread, connection: PeerConnection) -> None:
        self._loop = loop
        self.connection = connection

    @property
    def peer(self) -> PeerIdentity:
        """Who is on the other end, verified against its signed device record."""
        return self.connection.peer

    @property
    def path(self) -> str:
        """``"direct"``, ``"relay"`` or ``"closed"``: what carries the connection now."""
        return self._loop.call(lambda: self.connection.path)

    @property
    def setup_seconds(self) -> float:
        """Time from ``connect()`` (or the offer) to an authenticated connection."""
        return self.connection.setup_seconds

    @property
    def initiated(self) -> bool:
        """True on the side that called ``connect()``."""
        return self.connection.initiated

    @property
    def path_changes(self) -> list[PathChange]:
        """Every change of ``path`` so far, oldest first (see ``PeerConnection``)."""
        return self._loop.call(lambda: self.connection.path_changes)

    def wait_path_change(self, timeout: float | None = None) -> PathChange:
        """The next change of ``path``; ``TimeoutError`` after ``timeout`` seconds."""
        return self._loop.run(self.connection.wait_path_change(), timeout)

    def open_stream(self) -> SyncStream:
        """A new stream to the peer (it sees it from ``accept_stream``)."""
        reader, writer = self._loop.call(self.connection.open_stream)
        return SyncStream(self._loop, reader, writer)

    def accept_stream(self, timeout: float | None = None) -> SyncStream:
        """The next stream the peer opened; ``TimeoutError`` after ``timeout`` seconds."""
        reader, writer = self._loop.run(self.connection.accept_stream(), timeout)
        return SyncStream(self._loop, reader, writer)

    def send_datagram(self, data: bytes) -> None:
        """Send one unreliable, unordered datagram (it may be lost)."""
        self._loop.call(lambda: self.connection.send_datagram(data))

    def receive_datagram(self, timeout: float | None = None) -> bytes:
        """The next datagram from the peer; ``TimeoutError`` after ``timeout`` seconds."""
        return self._loop.run(self.connection.receive_datagram(), timeout)

    def wait_closed(self, timeout: float | None = None) -> str:
        """Block until the connection ends (either side, or a lost path); the reason."""
        return self._loop.run(self.connection.wait_closed(), timeout)

    def close(self, reason: str = "") -> None:
        """Close the connection (the peer is told ``reason``); nothing to do once the
        client is closed."""
        if not self._loop.stopped:
            self._loop.run(self.connection.close(reason))

    def __enter__(self) -> SyncPeerConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncOffer:
    """A peer's unanswered offer, for blocking code (``SyncClient.offers``); see
    ``IncomingOffer``.

    Attributes:
        peer_handle: who calls.
        peer_device_id: the caller's device.
        expires_at_ms: when the caller stops waiting (Unix milliseconds).
    """

    def __init__(self, loop: LoopThread, offer: IncomingOffer) -> None:
        self._loop = loop
        self._offer = offer
        self.peer_handle = offer.peer_handle
        self.peer_device_id = offer.peer_device_id
        self.expires_at_ms = offer.expires_at_ms

    def accept(self, timeout: float | None = None) -> SyncPeerConnection:
        """Answer the offer and set up the connection."""
        return SyncPeerConnection(self._loop, self._loop.run(self._offer.accept(), timeout))

    def decline(self, reason: str = "declined") -> None:
        """Refuse the offer; the caller's ``connect`` fails with ``PeerDeclined``."""
        self._loop.run(self._offer.decline(reason))


class SyncOffers(BlockingIterator[IncomingOffer, SyncOffer]):
    """Unanswered offers, blocking: ``for offer in client.offers(): offer.accept()``.
    Listening starts as soon as ``SyncClient.offers()`` returns; ``close()`` stops it."""


class SyncIncoming(BlockingIterator[PeerConnection, SyncPeerConnection]):
    """Incoming peer connections, blocking: ``for conn in client.incoming(): ...`` or
    ``conn = incoming.next(timeout)``.

    Listening starts as soon as ``SyncClient.incoming()`` returns (not at the first
    ``next``), so a script can go on, connect elsewhere, and collect the connection
    later. ``close()`` (or leaving ``with``) stops listening.
    """
