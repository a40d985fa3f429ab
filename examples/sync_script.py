"""The blocking client, for scripts: no asyncio in sight.

    .venv/bin/python examples/sync_script.py [HOST:PORT]

``SyncClient`` runs the async client's event loop in a background thread, so lease renewal
and watches keep working while the script blocks. Pins are kept in a file here, as an app
would keep them across runs.
"""

import os
import secrets
import sys
import tempfile
from pathlib import Path

from client_sdk import ClientConfig, Identity, PinStore, SyncClient, Tls

# TLS verified with the CA file in $SUPERNODE_CA (`supernode certs` writes certs/sdk-ca.pem);
# without it, plaintext, as `make run`'s development node on loopback serves.
CA = os.environ.get("SUPERNODE_CA")
CONFIG = ClientConfig(tls=Tls(ca_file=CA)) if CA else ClientConfig(plaintext=True)


def main(target: str) -> None:
    with tempfile.TemporaryDirectory() as home:
        key_file = Path(home) / "account.key"
        Identity.generate().save(key_file)  # once, at first start; 0600
        identity = Identity.load(key_file)
        pins = PinStore.file(Path(home) / "pins.json")
        handle = f"carol-{secrets.token_hex(3)}"
        with SyncClient([target], identity, handle, pin_store=pins, config=CONFIG) as carol:
            carol.create_account("Carol Script")
            carol.register_device("cli", transport_key=Identity.generate().public_key)
            with carol.watch([handle]) as watch:
                first = watch.next(timeout=10)
                assert first is not None and first.snapshot is not None
                print("watching myself:", [d.device_id for d in first.snapshot[handle].devices])
            me = carol.lookup(handle)
            print(f"{me.handle} has {len(me.devices)} device(s)")
            print("own key pinned:", pins.pinned(handle) == identity.public_key)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SUPERNODE_TARGET", "127.0.0.1:7700"))
