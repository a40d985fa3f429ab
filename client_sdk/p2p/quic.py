"""QUIC over our own datagram paths: aioquic's sans-IO ``QuicConnection`` and a thin
asyncio shell (the aioquic/aioice model: protocol core takes datagrams and time, returns
datagrams and events).

Streams are presented as ``asyncio.StreamReader`` plus a small writer; datagrams as a
queue. TLS 1.3 inside QUIC authenticates the callee (the QUIC server) by its certificate,
pinned to the transport key of its signed record.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.p2p.certificates import PEER_SERVER_NAME, pem

ALPN = "supernode-p2p/1"
# The one logical peer address QUIC ever sees, whatever path carries the datagrams.
PEER_ADDRESS = ("192.0.0.170", 1)
_KEEPALIVE_SECONDS = 10.0
_WINDOW = 16 << 20  # FINDINGS: larger flow-control windows for real latencies
# A writer's drain() waits above HIGH unacknowledged bytes on its stream, until LOW remain:
# enough in flight to fill the window at tens of MB/s and tens of ms of round trip.
SEND_BUFFER_HIGH = 1 << 20
SEND_BUFFER_LOW = 512 << 10


class QuicClosed(Exception):
    """The QUIC connection ended; the message says why (TLS alerts included)."""

    def __init__(self, reason: str, error_code: int = 0) -> None:
        super().__init__(reason)
        self.error_code = error_code


def client_configuration(peer_certificate: x509.Certificate) -> QuicConfiguration:
    """Caller side: trust exactly the callee's pinned certificate."""
    configuration = _configuration(is_client=True)
    configuration.verify_mode = ssl.CERT_REQUIRED
    configuration.cadata = pem(peer_certificate)
    configuration.server_name = PEER_SERVER_NAME
    return configuration


def server_configuration(
    certificate: x509.Certificate, private_key: Ed25519PrivateKey
) -> QuicConfiguration:
    configuration = _configuration(is_client=False)
    configuration.certificate = certificate
    configuration.private_key = private_key
    return configuration


def _configuration(*, is_client: bool) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=60.0,
        max_datagram_frame_size=65536,
        max_data=_WINDOW,
        max_stream_data=_WINDOW,
    )


class QuicStreamWriter:
    """The sending half of one QUIC stream, shaped like ``asyncio.StreamWriter``."""

    def __init__(self, session: QuicSession, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._closed = False

    def write(self, data: bytes) -> None:
        self._session.send_stream_data(self.stream_id, data, end_stream=False)

    def write_eof(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.send_stream_data(self.stream_id, b"", end_stream=True)

    def close(self) -> None:
        self.write_eof()

    async def drain(self) -> None:
        """Wait until the peer has acknowledged enough of what was written (see
        :meth:`QuicSession.drain`); raises :class:`QuicClosed` once the connection ended."""
        await self._session.drain(self.stream_id)

    def is_closing(self) -> bool:
        return self._closed


@dataclass
class _Stream:
    reader: asyncio.StreamReader
    writer: QuicStreamWriter


class QuicSession:
    """One QUIC connection driven over ``send`` (a datagram path) and ``receive``."""

    def __init__(self, quic: QuicConnection, send: Callable[[bytes], None]) -> None:
        self._quic = quic
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._transmit_scheduled = False
        self._drain_waiters: dict[int, asyncio.Future[None]] = {}
        self._keepalive: asyncio.TimerHandle | None = None
        self._streams: dict[int, _Stream] = {}
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self.incoming_streams: asyncio.Queue[tuple[asyncio.StreamReader, QuicStreamWriter]] = (
            asyncio.Queue()
        )
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed: asyncio.Future[QuicClosed] = self._loop.create_future()

    # ------------------------------------------------------------------ construction

    @classmethod
    def connect(
        cls, configuration: QuicConfiguration, send: Callable[[bytes], None]
    ) -> QuicSession:
        session = cls(QuicConnection(configuration=configuration), send)
        session._quic.connect(PEER_ADDRESS, now=session._loop.time())
        session._transmit()
        return session

    @classmethod
    def accept(
        cls, configuration: QuicConfiguration, first_datagram: bytes, send: Callable[[bytes], None]
    ) -> QuicSession:
        """The server side, created from the client's first datagram."""
        header = pull_quic_header(
            Buffer(data=first_datagram), host_cid_length=configuration.connection_id_length
        )
        quic = QuicConnection(
            configuration=configuration,
            original_destination_connection_id=header.destination_cid,
        )
        session = cls(quic, send)
        session.receive(first_datagram)
        return session

    # ------------------------------------------------------------------ I/O in

    def receive(self, datagram: bytes) -> None:
        self._quic.receive_datagram(datagram, PEER_ADDRESS, now=self._loop.time())
        self._process(flush=False)

    def _process(self, *, flush: bool = True) -> None:
        while (event := self._quic.next_event()) is not None:
            self._handle(event)
        self._wake_writers()
        if flush:
            self._transmit()
        else:
            self._transmit_soon()

    def _handle(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            if not self.handshake.done():
                self.handshake.set_result(None)
            self._schedule_keepalive()
        elif isinstance(event, StreamDataReceived):
            stream = self._stream(event.stream_id, incoming=True)
            if event.data:
                stream.reader.feed_data(event.data)
            if event.end_stream:
                stream.reader.feed_eof()
        elif isinstance(event, StreamReset):
            stream = self._stream(event.stream_id, incoming=True)
            stream.reader.set_exception(ConnectionResetError(f"stream {event.stream_id} reset"))
        elif isinstance(event, DatagramFrameReceived):
            self.datagrams.put_nowait(event.data)
        elif isinstance(event, ConnectionTerminated):
            self._terminated(
                QuicClosed(event.reason_phrase or f"error 0x{event.error_code:x}", event.error_code)
            )

    def _terminated(self, reason: QuicClosed) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(reason)
        if not self.closed.done():
            self.closed.set_result(reason)
        for stream in self._streams.values():
            if not stream.reader.at_eof():
                stream.reader.set_exception(ConnectionResetError(str(reason)))
        for handle in (self._timer, self._keepalive):
            if handle is not None:
                handle.cancel()
        waiters, self._drain_waiters = self._drain_waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(reason)

    def _stream(self, stream_id: int, *, incoming: bool) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = _Stream(asyncio.StreamReader(limit=1 << 20), QuicStreamWriter(self, stream_id))
            self._streams[stream_id] = stream
            if incoming:
                self.incoming_streams.put_nowait((stream.reader, stream.writer))
        return stream

    # ------------------------------------------------------------------ I/O out

    def _transmit_soon(self) -> None:
        """Transmit once the datagrams that are ready have all been received.

        One transmit per burst instead of one per datagram: the ACKs for a burst leave as
        one packet, and the sender fills the window the burst's ACKs opened in one pass
        (building packets and resetting the timer per datagram cost more than QUIC's own
        receive path).
        """
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self._loop.call_soon(self._transmit)

    def _transmit(self) -> None:
        self._transmit_scheduled = False
        for data, _ in self._quic.datagrams_to_send(now=self._loop.time()):
            self._send(data)
        at = None if self.closed.done() else self._quic.get_timer()
        if self._timer is not None:
            if at == self._timer_at:
                return  # the common case under load: the same deadline, keep the handle
            self._timer.cancel()
            self._timer = None
        if at is not None:
            # The deadline is kept beside the handle: uvloop returns a plain Handle,
            # without when(), for a deadline already past.
            self._timer = self._loop.call_at(at, self._on_timer)
            self._timer_at = at

    def _on_timer(self) -> None:
        self._timer = None
        self._quic.handle_timer(now=self._loop.time())
        self._process()

    def _schedule_keepalive(self) -> None:
        # aioquic sends no keepalives of its own; NAT bindings and the relay need traffic.
        def ping() -> None:
            if self.closed.done():
                return
            self._quic.send_ping(0)
            self._transmit()
            self._keepalive = self._loop.call_later(_KEEPALIVE_SECONDS, ping)

        self._keepalive = self._loop.call_later(_KEEPALIVE_SECONDS, ping)

    # ------------------------------------------------------------------ API

    def open_stream(self) -> tuple[asyncio.StreamReader, QuicStreamWriter]:
        if self.closed.done():
            raise self.closed.result()
        stream = self._stream(self._quic.get_next_available_stream_id(), incoming=False)
        return stream.reader, stream.writer

    def send_stream_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        if self.closed.done():
            raise self.closed.result()
        self._quic.send_stream_data(stream_id, data, end_stream)
        self._transmit_soon()

    def send_datagram(self, data: bytes) -> None:
        if self.closed.done():
            raise self.closed.result()
        self._quic.send_datagram_frame(data)
        self._transmit()

    def unacknowledged(self, stream_id: int) -> int:
        """Bytes written to the stream that the peer has not acknowledged yet.

        aioquic has no public accessor: its sender keeps exactly these bytes in a buffer
        (acknowledged data at its start is dropped). Pinned by the SDK's aioquic range and
        tested in ``tests/unit/test_p2p_quic.py``.
        """
        stream = self._quic._streams.get(stream_id)
        if stream is None or stream.sender._reset_error_code is not None:
            return 0  # finished, or reset (the peer's STOP_SENDING): nothing more to wait for
        return len(stream.sender._buffer)

    async def drain(self, stream_id: int) -> None:
        """Wait while the stream holds more than ``SEND_BUFFER_HIGH`` unacknowledged bytes.

        Without this bound an app writing a file would hand aioquic the whole file at
        once: memory grows with the file, and a connection close or a path change strands
        megabytes. Acknowledgements wake the writer once at most ``SEND_BUFFER_LOW`` remain.
        """
        if self.closed.done():
            raise self.closed.result()
        if self.unacknowledged(stream_id) <= SEND_BUFFER_HIGH:
            await asyncio.sleep(0)  # still a yield point, as asyncio's drain is under load
            return
        waiter = self._drain_waiters.get(stream_id)
        if waiter is None:
            waiter = self._drain_waiters[stream_id] = self._loop.create_future()
        await asyncio.shield(waiter)

    def _wake_writers(self) -> None:
        if not self._drain_waiters:
            return
        for stream_id, waiter in list(self._drain_waiters.items()):
            if self.unacknowledged(stream_id) <= SEND_BUFFER_LOW:
                del self._drain_waiters[stream_id]
                if not waiter.done():
                    waiter.set_result(None)

    def path_changed(self) -> None:
        """The datagrams now take another path: get loss recovery going on it at once.

        Packets sent into the dead path are unacknowledged and QUIC's probe timer has
        backed off during the outage (it doubles each time: after 3 s of silence the next
        probe may be seconds away). An ack-eliciting probe now (probes may exceed a full
        congestion window, RFC 9002 sections 6.2.4 and 7) brings an ACK over the new path,
        which resets the backoff and declares the stranded packets lost, so they are
        retransmitted within a round trip. aioquic's public ``send_ping`` obeys the window,
        hence its probe flag.
        """
        if self.closed.done():
            return
        self._quic._send_probe()
        self._transmit()

    def lost(self, reason: str) -> None:
        """Every path to the peer ended: nothing more can arrive, so close.

        Through QUIC rather than at once: if the peer's CONNECTION_CLOSE came just before
        its path ended, QUIC is draining and ends shortly with the peer's reason; otherwise
        it ends after its closing period (a few round trips) with this one.
        """
        if not self.closed.done():
            self._quic.close(reason_phrase=f"path lost: {reason}")
            self._transmit()

    def close(self, error_code: int = 0, reason: str = "") -> None:
        if not self.closed.done():
            self._transmit()  # what was written leaves first, as far as the window allows
            self._quic.close(error_code=error_code, reason_phrase=reason)
            self._transmit()
            self._terminated(QuicClosed(reason or "closed locally", error_code))
