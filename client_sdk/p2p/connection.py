"""``PeerConnection``: what the app holds once a peer is connected and authenticated."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from client_sdk.p2p.path_policy import PathChange
from client_sdk.p2p.paths import PathSwitch
from client_sdk.p2p.quic import QuicSession, QuicStreamWriter


@dataclass(frozen=True)
class PeerIdentity:
    """Who is on the other end. Verified: from the peer's record signed by its (pinned)
    account key, and the peer proved it holds ``transport_key``.

    Attributes:
        handle: the peer's account.
        device_id: the peer's device.
        transport_key: the raw Ed25519 public key the peer proved it holds.
    """

    handle: str
    device_id: str
    transport_key: bytes


class PeerConnection:
    """Reliable streams and unreliable datagrams to one authenticated peer, over the direct
    path when one was found, else through the relay (``path``).

    The connection outlives its direct path: when the direct path stops answering, the same
    QUIC connection (streams, state, keys) carries on over the relay within a few seconds,
    and goes back to direct once direct answers again. ``path_changes`` records each move
    with its time and how long it took; :meth:`wait_path_change` waits for the next one.
    """

    def __init__(
        self,
        peer: PeerIdentity,
        session: QuicSession,
        switch: PathSwitch,
        *,
        setup_seconds: float,
        initiated: bool,
    ) -> None:
        self.peer = peer
        self._session = session
        self._switch = switch
        self.setup_seconds = setup_seconds
        self.initiated = initiated
        self._change_waiters: list[asyncio.Future[PathChange]] = []
        switch.listeners.append(self._path_changed)

    def _path_changed(self, change: PathChange) -> None:
        if change.old is not None and change.new is not None:
            self._session.path_changed()
        waiters, self._change_waiters = self._change_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(change)

    @property
    def path(self) -> str:
        """``"direct"`` or ``"relay"``: the path currently carrying the connection."""
        kind = self._switch.kind
        return "closed" if kind is None else kind.value

    @property
    def path_changes(self) -> list[PathChange]:
        """Every change of ``path`` so far, oldest first, the path chosen at setup included.

        ``at`` is on the event loop's clock (``time.monotonic()`` by default);
        ``waited_seconds`` is how long the switch took: leaving direct, the time since it
        last answered a probe; returning to it, the time since it first answered again.
        """
        return list(self._switch.changes)

    async def wait_path_change(self) -> PathChange:
        """The next change of ``path`` (changes already made are in ``path_changes``)."""
        waiter: asyncio.Future[PathChange] = asyncio.get_running_loop().create_future()
        self._change_waiters.append(waiter)
        return await waiter

    def open_stream(self) -> tuple[asyncio.StreamReader, QuicStreamWriter]:
        """A new reliable, ordered stream to the peer: (reader, writer); ``write_eof()``
        ends our side. The peer gets it from :meth:`accept_stream`."""
        return self._session.open_stream()

    async def accept_stream(self) -> tuple[asyncio.StreamReader, QuicStreamWriter]:
        """The next stream the peer opened."""
        return await self._session.incoming_streams.get()

    def send_datagram(self, data: bytes) -> None:
        """Send one unreliable, unordered datagram (it may be lost)."""
        self._session.send_datagram(data)

    async def receive_datagram(self) -> bytes:
        """The next datagram from the peer."""
        return await self._session.datagrams.get()

    async def close(self, reason: str = "") -> None:
        """Close the connection; the peer's :meth:`wait_closed` returns ``reason``."""
        self._session.close(reason=reason or "closed by the app")
        await self._switch.close()  # the paths send what is queued (the CONNECTION_CLOSE) first

    async def wait_closed(self) -> str:
        """Wait until the connection ends (either side, or every path lost): the reason."""
        return str(await self._session.closed)

    async def __aenter__(self) -> PeerConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
