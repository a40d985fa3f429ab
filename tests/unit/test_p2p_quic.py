"""QUIC over an in-memory datagram path: pinning, streams, datagrams (no sockets)."""

import asyncio

import pytest
import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.p2p.certificates import (
    CertificateMismatch,
    check_pinned,
    der,
    raw_public_key,
    self_signed,
)
from client_sdk.p2p.quic import (
    SEND_BUFFER_HIGH,
    QuicClosed,
    QuicSession,
    client_configuration,
    server_configuration,
)


class Wire:
    """Two endpoints joined by the event loop, in both directions, losslessly."""

    def __init__(self) -> None:
        self.server: QuicSession | None = None
        self.client: QuicSession | None = None
        self.server_key = Ed25519PrivateKey.generate()
        self.server_certificate = self_signed(self.server_key)

    def to_server(self, data: bytes) -> None:
        asyncio.get_running_loop().call_soon(self._deliver_to_server, data)

    def _deliver_to_server(self, data: bytes) -> None:
        if self.server is None:
            self.server = QuicSession.accept(
                server_configuration(self.server_certificate, self.server_key), data, self.to_client
            )
        else:
            self.server.receive(data)

    def to_client(self, data: bytes) -> None:
        assert self.client is not None
        asyncio.get_running_loop().call_soon(self.client.receive, data)


async def test_pinned_handshake_streams_and_datagrams() -> None:
    wire = Wire()
    wire.client = QuicSession.connect(client_configuration(wire.server_certificate), wire.to_server)
    async with asyncio.timeout(5):
        await wire.client.handshake
    reader, writer = wire.client.open_stream()
    payload = bytes(range(256)) * 4096  # 1 MiB
    writer.write(payload)
    writer.write_eof()
    assert wire.server is not None
    async with asyncio.timeout(5):
        server_reader, server_writer = await wire.server.incoming_streams.get()
    async with asyncio.timeout(10):
        assert await server_reader.read() == payload
    server_writer.write(b"echo")
    server_writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b"echo"
    wire.client.send_datagram(b"dgram")
    async with asyncio.timeout(5):
        assert await wire.server.datagrams.get() == b"dgram"
    wire.client.close(reason="done")
    async with asyncio.timeout(5):
        closed = await wire.server.closed
    assert "done" in str(closed)


async def test_wrong_certificate_is_refused() -> None:
    wire = Wire()
    impostor = self_signed(Ed25519PrivateKey.generate())
    wire.client = QuicSession.connect(client_configuration(impostor), wire.to_server)
    with pytest.raises(QuicClosed) as refused:
        async with asyncio.timeout(5):
            await wire.client.handshake
    assert refused.value.error_code == 0x12A  # TLS alert bad_certificate


def test_pinning_checks_the_key() -> None:
    key = Ed25519PrivateKey.generate()
    certificate = der(self_signed(key))
    assert check_pinned(certificate, raw_public_key(key.public_key()))
    with pytest.raises(CertificateMismatch, match="transport key"):
        check_pinned(certificate, b"\x01" * 32)
    with pytest.raises(CertificateMismatch, match="not a DER"):
        check_pinned(b"junk", b"\x01" * 32)


async def test_drain_bounds_what_a_writer_has_in_flight() -> None:
    """A writer that drains after each write never has much more than the bound
    unacknowledged, however much it writes; the peer still gets every byte."""
    wire = Wire()
    wire.client = QuicSession.connect(client_configuration(wire.server_certificate), wire.to_server)
    async with asyncio.timeout(5):
        await wire.client.handshake
    _, writer = wire.client.open_stream()
    chunk = bytes(64 << 10)
    most = 0
    for _ in range(64):  # 4 MiB
        writer.write(chunk)
        most = max(most, wire.client.unacknowledged(writer.stream_id))
        async with asyncio.timeout(10):
            await writer.drain()
        assert wire.client.unacknowledged(writer.stream_id) <= SEND_BUFFER_HIGH
    writer.write_eof()
    assert most <= SEND_BUFFER_HIGH + len(chunk)
    assert wire.server is not None
    async with asyncio.timeout(5):
        server_reader, _ = await wire.server.incoming_streams.get()
    async with asyncio.timeout(20):
        assert len(await server_reader.read()) == 64 * len(chunk)


class CutWire(Wire):
    """A wire whose client-to-server direction can be cut: nothing gets acknowledged."""

    cut = False

    def to_server(self, data: bytes) -> None:
        if not self.cut:
            super().to_server(data)


async def test_a_waiting_drain_ends_with_the_connection() -> None:
    wire = CutWire()
    wire.client = QuicSession.connect(client_configuration(wire.server_certificate), wire.to_server)
    async with asyncio.timeout(5):
        await wire.client.handshake
    wire.cut = True
    _, writer = wire.client.open_stream()
    writer.write(bytes(SEND_BUFFER_HIGH + 1))
    waiting = asyncio.create_task(writer.drain())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not waiting.done()  # waits: nothing written was acknowledged
    wire.client.close(reason="gone")
    with pytest.raises(QuicClosed, match="gone"):
        async with asyncio.timeout(5):
            await waiting
    with pytest.raises(QuicClosed):
        await writer.drain()


def test_a_transfer_on_uvloop() -> None:
    """uvloop hands back a plain ``Handle`` (no ``when()``) for a deadline already past;
    the session's timers must not depend on it. Apps moving bulk data run on uvloop."""
    uvloop.run(test_drain_bounds_what_a_writer_has_in_flight())
