"""Connect peers: Bob's laptop listens, Alice connects to it and they talk over QUIC.

    .venv/bin/python examples/connect_peers.py [HOST:PORT] [STUN_HOST:PORT]

The connection is peer to peer when a direct path exists (here, on one machine, it does)
and goes through the supernode's relay otherwise; either way it is end-to-end encrypted
and each side has checked the other's key against its signed device record.
"""

import asyncio
import os
import secrets
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import Client, ClientConfig, Identity, P2PSettings, PeerConnection, Tls

# TLS verified with the CA file in $SUPERNODE_CA (`supernode certs` writes certs/sdk-ca.pem);
# without it, plaintext, as `make run`'s development node on loopback serves.
CA = os.environ.get("SUPERNODE_CA")
CONFIG = ClientConfig(tls=Tls(ca_file=CA)) if CA else ClientConfig(plaintext=True)


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


async def serve_one(bob: Client) -> None:
    """Bob's side: accept one connection and echo one stream back, upper-cased."""
    connection: PeerConnection
    async for connection in bob.incoming():
        reader, writer = await connection.accept_stream()
        message = await reader.read()
        print(f"bob received {message.decode()!r} from {connection.peer.handle}")
        writer.write(message.upper())
        writer.write_eof()
        await connection.wait_closed()
        return


async def main(target: str, stun: tuple[str, int] | None) -> None:
    suffix = secrets.token_hex(3)
    async with (
        Client([target], Identity.generate(), f"bob-{suffix}", config=CONFIG) as bob,
        Client([target], Identity.generate(), f"alice-{suffix}", config=CONFIG) as alice,
    ):
        for client, device, contact in ((bob, "laptop", alice), (alice, "phone", bob)):
            await client.create_account(client.handle.title())
            key = Ed25519PrivateKey.generate()  # the device's QUIC key; keep it with the app
            await client.register_device(device, transport_key=public(key), ttl=60)
            # Offers from a contact are accepted without asking; any other caller's offer
            # would go to incoming()'s accept policy (none here: declined, unanswered).
            settings = P2PSettings(stun_server=stun, auto_accept=frozenset({contact.handle}))
            client.enable_peer_to_peer(device, key, settings)

        server = asyncio.create_task(serve_one(bob))
        async with asyncio.timeout(10):
            await bob.wait_listening()  # the supernode has Bob's listener: offers reach him
        async with await alice.connect(bob.handle, "laptop") as connection:
            peer = connection.peer
            setup_ms = connection.setup_seconds * 1000
            print(
                f"connected to {peer.handle}/{peer.device_id} "
                f"path: {connection.path} in {setup_ms:.0f} ms"
            )
            reader, writer = connection.open_stream()
            writer.write(b"hello over quic")
            writer.write_eof()
            print(f"alice got back {(await reader.read()).decode()!r}")
        await server


if __name__ == "__main__":
    address = (
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SUPERNODE_TARGET", "127.0.0.1:7700")
    )
    stun_arg = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("SUPERNODE_STUN", "")
    stun_host, _, stun_port = stun_arg.rpartition(":")
    asyncio.run(main(address, (stun_host, int(stun_port)) if stun_arg else None))
