"""A minimal app for tests that need a device whose app dies: ``python -m
tests.integration.sdk_device_app TARGET HANDLE``.

Creates the account, registers device ``phone`` with a 1 s lease, prints ``registered`` and
then only lets the SDK renew in the background, until it is killed.
"""

import asyncio
import sys

from client_sdk import Client, ClientConfig, Identity


async def main(target: str, handle: str) -> None:
    identity = Identity.generate()
    # The test nodes serve plaintext on loopback (tests/integration/process.py).
    async with Client([target], identity, handle, config=ClientConfig(plaintext=True)) as client:
        await client.create_account(handle.title())
        registration = await client.register_device(
            "phone", transport_key=Identity.generate().public_key, ttl=1
        )
        print(f"registered ttl={registration.ttl_seconds}", flush=True)
        await asyncio.Event().wait()  # the SDK renews; the test SIGKILLs us


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
