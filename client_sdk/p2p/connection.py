"""``PeerConnection``: what the app holds once a peer is connected and authenticated."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from client_sdk.p2p.paths import PathSwitch
from client_sdk.p2p.quic import QuicSession, QuicStreamWriter


@dataclass(frozen=True)
class PeerIdentity:
    """Verified: from the peer's record signed by its (pinned) account key."""

    handle: str
    device_id: str
    transport_key: bytes


class PeerConnection:
    """Reliable streams and unreliable datagrams to one authenticated peer, over the direct
    path when one was found, else through the relay (``path``)."""

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

    @property
    def path(self) -> str:
        """``"direct"`` or ``"relay"``: the path currently carrying the connection."""
        kind = self._switch.kind
        return "closed" if kind is None else kind.value

    def open_stream(self) -> tuple[asyncio.StreamReader, QuicStreamWriter]:
        return self._session.open_stream()

    async def accept_stream(self) -> tuple[asyncio.StreamReader, QuicStreamWriter]:
        """The next stream the peer opened."""
        return await self._session.incoming_streams.get()

    def send_datagram(self, data: bytes) -> None:
        self._session.send_datagram(data)

    async def receive_datagram(self) -> bytes:
        return await self._session.datagrams.get()

    async def close(self, reason: str = "") -> None:
        self._session.close(reason=reason or "closed by the app")
        await self._switch.close()  # the paths send what is queued (the CONNECTION_CLOSE) first

    async def wait_closed(self) -> str:
        return str(await self._session.closed)

    async def __aenter__(self) -> PeerConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
