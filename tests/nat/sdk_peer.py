"""An app embedding the SDK, run inside a lab namespace; it reports in JSON lines.

    python -m tests.nat.sdk_peer callee TARGET STUN HANDLE
    python -m tests.nat.sdk_peer caller TARGET STUN HANDLE PEER MARKER

The callee accepts one connection, reads one stream to its end and answers with the bytes
reversed. The caller waits for a line on stdin (the test's go-ahead once the callee
listens), connects, sends 1 MiB made of MARKER, and checks the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import Client, ClientConfig, Identity, P2PSettings, PeerConnection
from client_sdk.p2p.certificates import raw_public_key

MIB = 1 << 20


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def start(target: str, stun: str, handle: str) -> Client:
    host, port = stun.rsplit(":", 1)
    client = Client([target], Identity.generate(), handle, config=ClientConfig(plaintext=True))
    await client.create_account(handle)
    key = Ed25519PrivateKey.generate()
    await client.register_device("dev", transport_key=raw_public_key(key.public_key()), ttl=600)
    client.enable_peer_to_peer("dev", key, P2PSettings(stun_server=(host, int(port))))
    return client


def describe(connection: PeerConnection) -> dict[str, object]:
    return {
        "path": connection.path,
        "peer": f"{connection.peer.handle}/{connection.peer.device_id}",
        "setup_ms": round(connection.setup_seconds * 1000, 1),
    }


async def callee(target: str, stun: str, handle: str) -> None:
    async with await start(target, stun, handle) as client:
        incoming = client.incoming(accept=lambda offer: True)  # the lab's caller
        first = asyncio.ensure_future(anext(incoming))  # iterating incoming() listens
        async with asyncio.timeout(30):
            await client.wait_listening()
        say(event="listening")  # offers can reach this device now
        connection = await first
        say(event="connected", **describe(connection))
        reader, writer = await connection.accept_stream()
        data = await reader.read()
        say(event="received", bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        writer.write(data[::-1])
        writer.write_eof()
        say(event="closed", reason=await connection.wait_closed())


async def caller(target: str, stun: str, handle: str, peer: str, marker: str) -> None:
    async with await start(target, stun, handle) as client:
        say(event="registered")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        connection = await client.connect(peer, "dev")
        say(event="connected", **describe(connection))
        payload = (marker.encode() * (MIB // len(marker) + 1))[:MIB]
        reader, writer = connection.open_stream()
        writer.write(payload)
        writer.write_eof()
        answer = await reader.read()
        say(
            event="done",
            sent_sha256=hashlib.sha256(payload).hexdigest(),
            answer_ok=answer == payload[::-1],
            path=connection.path,
        )
        await connection.close()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    asyncio.run(callee(*args) if role == "callee" else caller(*args))
