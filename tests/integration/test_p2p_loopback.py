"""Peer-to-peer connections between two SDK agents on one host (the NAT lab covers NATs)."""

import asyncio
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import (
    Identity,
    P2PSettings,
    PeerAuthenticationFailed,
    PeerConnection,
    PeerKeyMismatch,
    PeerOffline,
    SignatureError,
    Stale,
)
from client_sdk.p2p.certificates import raw_public_key
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import sign_device_record
from supernode.store import Store
from tests.integration.metrics import sample
from tests.integration.p2p_support import accept_any, alice_and_bob, first_incoming, listening
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import StartSupernode, restart_on_same_port
from tests.integration.tap import RecordingProxy

MIB = 1 << 20


def stun_of(node: SupernodeProcess) -> tuple[str, int]:
    host, port = node.stun_address.rsplit(":", 1)
    return host, int(port)


async def exchange(caller: PeerConnection, callee: PeerConnection, marker: bytes) -> None:
    """1 MiB each way over one stream, byte-identical (checked by hash)."""
    payload_out = (marker * (MIB // len(marker) + 1))[:MIB]
    payload_back = bytes(reversed(payload_out))
    reader, writer = caller.open_stream()
    writer.write(payload_out)
    writer.write_eof()
    async with asyncio.timeout(20):
        peer_reader, peer_writer = await callee.accept_stream()
    async with asyncio.timeout(60):
        received = await peer_reader.read()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload_out).digest()
    peer_writer.write(payload_back)
    peer_writer.write_eof()
    async with asyncio.timeout(60):
        assert await reader.read() == payload_back
    caller.send_datagram(b"datagram")
    async with asyncio.timeout(10):
        assert await callee.receive_datagram() == b"datagram"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "relay-only"])
async def test_connect_and_exchange(supernode: SupernodeProcess, direct: bool) -> None:
    settings = P2PSettings(stun_server=stun_of(supernode), direct=direct)
    async with alice_and_bob(supernode.grpc_target, settings) as (alice, bob):
        accepting = await listening(bob)
        async with asyncio.timeout(30):
            caller = await alice.connect("bob")
        async with asyncio.timeout(30):
            callee = await accepting
        assert caller.peer.handle == "bob" and callee.peer.handle == "alice"
        assert caller.path == callee.path == ("direct" if direct else "relay")
        await exchange(caller, callee, b"MARKER-plaintext-must-not-appear ")
        relayed = sample(supernode.metrics(), "supernode_relay_bytes_total")
        if direct:  # the payload took the direct path (the relay sees only keepalives)
            assert relayed < MIB
        else:
            assert relayed > 2 * MIB  # everything went through the relay, encrypted
        await caller.close()
        # The caller's own CONNECTION_CLOSE arrived (over whichever path), not a timeout.
        async with asyncio.timeout(10):
            assert await callee.wait_closed() == "closed by the app"


async def test_losing_the_relay_ends_the_connection_at_once(supernode: SupernodeProcess) -> None:
    """No other path left: both peers learn it now, not at QUIC's idle timeout."""
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (alice, bob):
        accepting = await listening(bob)
        async with asyncio.timeout(30):
            caller = await alice.connect("bob")
        async with asyncio.timeout(30):
            callee = await accepting
        supernode.kill()
        for connection in (caller, callee):
            async with asyncio.timeout(10):
                reason = await connection.wait_closed()
            assert reason.startswith("path lost: relay"), reason
            assert connection.path == "closed"


async def test_offline_peer_fails_fast(supernode: SupernodeProcess) -> None:
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (alice, _bob):
        with pytest.raises(PeerOffline, match="not listening"):
            async with asyncio.timeout(10):
                await alice.connect("bob")


async def test_closing_the_client_ends_incoming_cleanly(supernode: SupernodeProcess) -> None:
    """The iterator just stops: no gRPC error from the cancelled Listen stream."""
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (_alice, bob):
        received: list[PeerConnection] = []

        async def accept_all() -> None:
            async for connection in bob.incoming(accept_any):
                received.append(connection)

        accepting = asyncio.create_task(accept_all())
        async with asyncio.timeout(30):
            await bob.wait_listening()
        listener = bob.listener
        await bob.close()
        async with asyncio.timeout(10):  # returned: neither raised nor hung
            await accepting
        assert received == []
        assert not listener.ready.is_set()


async def test_listening_as_an_unregistered_device_raises_an_sdk_error(
    supernode: SupernodeProcess,
) -> None:
    """What listening again cannot fix ends ``incoming()`` with our error, not grpc's."""
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (_alice, bob):
        bob.enable_peer_to_peer("never-registered", Ed25519PrivateKey.generate(), settings)
        with pytest.raises(Stale, match="no live record"):
            async with asyncio.timeout(30):
                await first_incoming(bob)


async def test_callee_presenting_another_key_is_refused(supernode: SupernodeProcess) -> None:
    """What a swapped certificate looks like to the caller: a key that is not the record's."""
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (alice, bob):
        bob.enable_peer_to_peer("dev", Ed25519PrivateKey.generate(), settings)  # record: old key
        accepting = await listening(bob)
        with pytest.raises(PeerKeyMismatch, match="transport key"):
            async with asyncio.timeout(30):
                await alice.connect("bob")
        accepting.cancel()


async def test_caller_without_its_records_key_is_refused(supernode: SupernodeProcess) -> None:
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (alice, bob):
        alice.enable_peer_to_peer("dev", Ed25519PrivateKey.generate(), settings)
        accepting = await listening(bob)
        with pytest.raises(PeerAuthenticationFailed):
            async with asyncio.timeout(30):
                await alice.connect("bob")
        assert not accepting.done()  # bob refused it and keeps listening
        accepting.cancel()


async def test_relay_carries_only_ciphertext(supernode: SupernodeProcess) -> None:
    """Everything both peers exchanged with the supernode, recorded: no plaintext marker."""
    marker = b"MARKER-7f3a-plaintext "
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    alice_tap = await RecordingProxy(supernode.grpc_target).start()
    bob_tap = await RecordingProxy(supernode.grpc_target).start()
    try:
        async with alice_and_bob(alice_tap.address, settings, bob_tap.address) as (alice, bob):
            accepting = await listening(bob)
            async with asyncio.timeout(30):
                caller = await alice.connect("bob")
            async with asyncio.timeout(30):
                callee = await accepting
            assert caller.path == "relay"
            await exchange(caller, callee, marker)
            await caller.close()
    finally:
        await alice_tap.close()
        await bob_tap.close()
    assert b"Alice" in alice_tap.recorded  # the tap does see what is sent in the clear
    for tap in (alice_tap, bob_tap):
        assert len(tap.recorded) > 2 * MIB  # the megabytes did cross this connection...
        assert marker not in tap.recorded  # ...but only as ciphertext
        assert marker[:12] not in tap.recorded


async def test_record_resigned_by_another_key_fails_connect(
    start_supernode: StartSupernode, supernode: SupernodeProcess
) -> None:
    """A supernode (or its disk) swapping bob's transport key, signing with its own key."""
    settings = P2PSettings(stun_server=stun_of(supernode), direct=False)
    async with alice_and_bob(supernode.grpc_target, settings) as (alice, _bob):
        await alice.lookup("bob")  # alice pins bob's account key
        node = supernode
        mallory_account = Identity.generate()
        mallory_transport = Ed25519PrivateKey.generate()
        node.kill()
        store = Store(node.data_dir)
        try:
            value = store.raw_device_value("bob", "dev")
            assert value is not None
            device = pb.Device.FromString(value[16:])
            record = pb.DeviceRecord.FromString(device.signed.record)
            record.transport_key = raw_public_key(mallory_transport.public_key())
            device.signed.CopyFrom(sign_device_record(mallory_account, record))
            store.put_raw_device_value("bob", "dev", value[:16] + device.SerializeToString())
        finally:
            store.close()
        restart_on_same_port(start_supernode, node)
        with pytest.raises(SignatureError, match="does not verify"):
            async with asyncio.timeout(30):
                await alice.connect("bob", "dev")
