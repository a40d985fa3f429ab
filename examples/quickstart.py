"""Quickstart: two users on a supernode; one registers a device, the other finds it.

    .venv/bin/python examples/quickstart.py [HOST:PORT]   # default $SUPERNODE_TARGET or :7700

Start a supernode first (``make run``). Bob creates his account and registers his laptop
(the SDK keeps its lease alive from then on); Alice searches for Bob, looks him up, and gets
his laptop's endpoints and transport key from a record whose signature the SDK has checked
against Bob's account key, pinned on first use.
"""

import asyncio
import os
import secrets
import sys

from client_sdk import Client, ClientConfig, DeviceStatus, Endpoint, Identity, Tls

# TLS verified with the CA file in $SUPERNODE_CA (`supernode certs` writes certs/sdk-ca.pem);
# without it, plaintext, as `make run`'s development node on loopback serves.
CA = os.environ.get("SUPERNODE_CA")
CONFIG = ClientConfig(tls=Tls(ca_file=CA)) if CA else ClientConfig(plaintext=True)


async def main(target: str) -> None:
    suffix = secrets.token_hex(3)  # fresh handles on every run
    # A real app generates its identity once and keeps it: Identity.save(path) / load(path).
    async with (
        Client([target], Identity.generate(), f"bob-{suffix}", config=CONFIG) as bob,
        Client([target], Identity.generate(), f"alice-{suffix}", config=CONFIG) as alice,
    ):
        await bob.create_account("Bob Example")
        await alice.create_account("Alice Example")

        laptop_key = Identity.generate().public_key  # the key the laptop's QUIC endpoint shows
        registration = await bob.register_device(
            "laptop",
            transport_key=laptop_key,
            endpoints=[Endpoint("192.0.2.10", 40000)],
            capabilities=["audio", "video"],
            ttl=60,
        )
        print(f"bob's laptop registered, lease {registration.ttl_seconds} s (renewed by the SDK)")

        found = await alice.search(bob.handle)
        print("alice searched:", [(r.handle, r.display_name) for r in found])

        presence = await alice.lookup(bob.handle)
        for device in presence.devices:
            where = ", ".join(f"{e.address}:{e.port}/{e.protocol.value}" for e in device.endpoints)
            print(
                f"alice found {device.handle}/{device.device_id}: {device.status.value} at {where}"
            )
            assert device.transport_key == laptop_key  # verified: signed by Bob's account key

        await bob.update_status("laptop", DeviceStatus.BUSY)
        status = (await alice.lookup(bob.handle)).devices[0].status
        print(f"bob is now {status.value}")
    print("closed: bob's laptop unregistered")


if __name__ == "__main__":
    target = (
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SUPERNODE_TARGET", "127.0.0.1:7700")
    )
    asyncio.run(main(target))
