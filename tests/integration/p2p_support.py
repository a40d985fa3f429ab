"""SDK clients with peer to peer enabled, for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import Client, ClientConfig, Identity, IncomingOffer, P2PSettings, PeerConnection
from client_sdk.p2p.certificates import raw_public_key

LISTEN_WITHIN_S = 30.0
# The SDK's defaults, but plaintext: the test nodes serve plaintext on loopback.
PLAINTEXT = ClientConfig(plaintext=True)


async def p2p_client(
    targets: str | list[str],
    handle: str,
    settings: P2PSettings,
    *,
    device_id: str = "dev",
    config: ClientConfig | None = None,
) -> Client:
    """A new account with one registered device that can connect and be connected to."""
    client = Client(targets, Identity.generate(), handle, config=config or PLAINTEXT)
    await client.create_account(handle.title())
    key = Ed25519PrivateKey.generate()
    await client.register_device(device_id, transport_key=raw_public_key(key.public_key()), ttl=600)
    client.enable_peer_to_peer(device_id, key, settings)
    return client


def accept_any(offer: IncomingOffer) -> bool:
    """A test callee's policy: the caller is whoever the test set up."""
    return True


async def first_incoming(client: Client) -> PeerConnection:
    async for connection in client.incoming(accept_any):
        return connection
    raise AssertionError("the listener ended without a connection")


@contextlib.asynccontextmanager
async def alice_and_bob(
    alice_target: str, settings: P2PSettings, bob_target: str | None = None
) -> AsyncIterator[tuple[Client, Client]]:
    """Two P2P-enabled clients ("alice", "bob"), closed on the way out."""
    alice = await p2p_client(alice_target, "alice", settings)
    bob = await p2p_client(bob_target or alice_target, "bob", settings)
    try:
        yield alice, bob
    finally:
        await alice.close()
        await bob.close()


async def listening(client: Client) -> asyncio.Task[PeerConnection]:
    """Start accepting one connection; returns once the supernode confirmed the Listen
    stream (an offer to a device not yet listening fails fast, by design)."""
    accepting = asyncio.create_task(first_incoming(client))
    await until_listening(client, accepting)
    return accepting


async def until_listening(client: Client, accepting: asyncio.Task[object]) -> None:
    """Wait for ``client``'s readiness, failing at once with the listener's own error if
    ``accepting`` (the task iterating ``incoming()``) ends first."""
    ready = asyncio.create_task(client.wait_listening())
    done, _ = await asyncio.wait(
        {ready, accepting}, timeout=LISTEN_WITHIN_S, return_when=asyncio.FIRST_COMPLETED
    )
    if ready in done:
        return
    ready.cancel()
    if accepting in done:
        accepting.result()  # raises what ended the listener
        raise AssertionError("incoming() ended before it was listening")
    raise AssertionError(f"not listening within {LISTEN_WITHIN_S} s")
