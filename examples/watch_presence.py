"""Watch presence: Alice follows Bob's devices as they come, change and go.

    .venv/bin/python examples/watch_presence.py [HOST:PORT]

The watch starts with a snapshot and then delivers every change, verified. It survives
supernode restarts and failover on its own: after a reconnect it resumes where it left off,
or (when the supernode lost its history, e.g. after a restart) delivers a new snapshot
flagged ``after_gap`` with ``gap_changes`` listing what changed meanwhile.
"""

import asyncio
import os
import secrets
import sys

from client_sdk import (
    Client,
    ClientConfig,
    DeviceStatus,
    EventKind,
    Identity,
    PresenceEvent,
    Tls,
)

# TLS verified with the CA file in $SUPERNODE_CA (`supernode certs` writes certs/sdk-ca.pem);
# without it, plaintext, as `make run`'s development node on loopback serves.
CA = os.environ.get("SUPERNODE_CA")
CONFIG = ClientConfig(tls=Tls(ca_file=CA)) if CA else ClientConfig(plaintext=True)


def describe(event: PresenceEvent) -> str:
    if event.kind is EventKind.SNAPSHOT:
        assert event.snapshot is not None
        online = {h: [d.device_id for d in p.devices] for h, p in event.snapshot.items()}
        return f"snapshot{' after a gap' if event.after_gap else ''}: {online}"
    if event.kind is EventKind.OFFLINE:
        assert event.reason is not None
        return f"{event.handle}/{event.device_id} offline ({event.reason.value})"
    assert event.device is not None
    return f"{event.handle}/{event.device_id} {event.kind.value}: {event.device.status.value}"


async def bob_comes_and_goes(bob: Client) -> None:
    key = Identity.generate().public_key
    await bob.register_device("phone", transport_key=key)
    await bob.update_status("phone", DeviceStatus.AWAY)
    await bob.unregister_device("phone")


async def main(target: str) -> None:
    suffix = secrets.token_hex(3)
    async with (
        Client([target], Identity.generate(), f"alice-{suffix}", config=CONFIG) as alice,
        Client([target], Identity.generate(), f"bob-{suffix}", config=CONFIG) as bob,
    ):
        await alice.create_account("Alice")
        await bob.create_account("Bob")
        bob_acting: asyncio.Task[None] | None = None
        async with alice.watch([bob.handle]) as watch:
            async for event in watch:
                print(describe(event))
                if event.kind is EventKind.SNAPSHOT and bob_acting is None:
                    bob_acting = asyncio.create_task(bob_comes_and_goes(bob))
                if event.kind is EventKind.OFFLINE:
                    break
        assert bob_acting is not None
        await bob_acting


if __name__ == "__main__":
    target = (
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SUPERNODE_TARGET", "127.0.0.1:7700")
    )
    asyncio.run(main(target))
