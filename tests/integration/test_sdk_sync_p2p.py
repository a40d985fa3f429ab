"""Peer to peer from blocking code: ``SyncClient.connect`` / ``incoming`` against a real
supernode, one thread, no asyncio in the test."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import Identity, P2PSettings, SyncClient
from client_sdk.p2p.certificates import raw_public_key
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, unique


def p2p_sync_client(target: str, prefix: str, device_id: str) -> SyncClient:
    client = SyncClient(target, Identity.generate(), unique(prefix), config=TEST_CONFIG)
    client.create_account(prefix.title())
    key = Ed25519PrivateKey.generate()
    client.register_device(device_id, transport_key=raw_public_key(key.public_key()), ttl=60)
    client.enable_peer_to_peer(device_id, key, P2PSettings(direct=False))
    return client


def test_sync_clients_connect_and_exchange_streams_and_datagrams(
    supernode: SupernodeProcess,
) -> None:
    target = supernode.grpc_target
    with (
        p2p_sync_client(target, "alice", "phone") as alice,
        p2p_sync_client(target, "bob", "laptop") as bob,
        # Listening starts here, in the background; bob accepts alice, declines anyone else.
        bob.incoming(accept=lambda offer: offer.peer_handle == alice.handle) as incoming,
    ):
        bob.wait_listening(timeout=30)
        with alice.connect(bob.handle, "laptop") as caller:
            callee = incoming.next(timeout=30)
            assert callee is not None
            assert caller.peer.handle == bob.handle and callee.peer.handle == alice.handle
            assert caller.initiated and not callee.initiated
            assert caller.path == callee.path == "relay"

            stream = caller.open_stream()
            stream.write(b"ping from blocking code")
            stream.write_eof()
            served = callee.accept_stream(timeout=30)
            assert served.read(timeout=30) == b"ping from blocking code"
            served.write(b"pong")
            served.write_eof()
            assert stream.read(timeout=30) == b"pong"

            callee.send_datagram(b"datagram")
            assert caller.receive_datagram(timeout=30) == b"datagram"
        # Leaving ``with`` closed the caller: the callee hears why, not a timeout.
        assert callee.wait_closed(timeout=30) == "closed by the app"
    assert incoming.next(timeout=1) is None  # closed with its client: listening is over
