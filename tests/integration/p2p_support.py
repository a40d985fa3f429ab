"""Building P2P agents on top of SDK clients, for tests."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import Client, Identity
from client_sdk.errors import NotFound
from client_sdk.p2p.certificates import raw_public_key
from client_sdk.p2p.connector import P2PAgent, P2PSettings
from client_sdk.types import Device


@dataclass
class P2PUser:
    client: Client
    agent: P2PAgent
    transport_key: Ed25519PrivateKey


async def p2p_user(
    target: str,
    handle: str,
    settings: P2PSettings,
    *,
    device_id: str = "dev",
    transport_key: Ed25519PrivateKey | None = None,
    create: bool = True,
) -> P2PUser:
    client = Client([target], Identity.generate(), handle)
    if create:
        await client.create_account(handle.title())
    key = transport_key or Ed25519PrivateKey.generate()
    await client.register_device(device_id, transport_key=raw_public_key(key.public_key()), ttl=600)

    async def resolve(peer: str, peer_device: str | None) -> Device:
        presence = await client.lookup(peer)
        for device in presence.devices:
            if peer_device is None or device.device_id == peer_device:
                return device
        raise NotFound(f"{peer}/{peer_device or '*'} has no live device")

    async def signaling() -> tuple[grpc.aio.Channel, tuple[tuple[str, str], ...]]:
        connection = await client._session.connection()
        return connection.channel, connection.metadata

    agent = P2PAgent(
        handle=handle,
        device_id=device_id,
        transport_key=key,
        signaling=signaling,
        resolve=resolve,
        settings=settings,
    )
    return P2PUser(client, agent, key)


def agent_with_key(user: P2PUser, key: Ed25519PrivateKey) -> P2PAgent:
    """The same device and account, but a transport key its signed record does not carry."""
    agent = user.agent
    return P2PAgent(
        handle=agent.handle,
        device_id=agent.device_id,
        transport_key=key,
        signaling=agent._signaling,
        resolve=agent._resolve,
        settings=agent.settings,
    )
