"""Acceptance 6: the SDK refuses forged records and substituted account keys.

The forgery is written straight into a stopped supernode's store, i.e. what a compromised
supernode (or anyone with its disk) would serve; the SDK must notice on its own.
"""

import struct
from dataclasses import replace
from pathlib import Path

import pytest

from client_sdk import Endpoint, EventKind, Identity, KeyChanged, PinStore, SignatureError
from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.store import Store
from tests.integration.sdk_support import (
    FAST_LEASES,
    TEST_CONFIG,
    Clients,
    Collector,
    StartSupernode,
    restart_on_same_port,
)

HEADER = struct.Struct(">QQ")  # expires_at_ms, seq: see the docstring of supernode/store.py


def redirect_endpoints(data_dir: Path, handle: str, device_id: str, address: str) -> None:
    """Rewrite a stored record's endpoints, keeping its (now wrong) signature."""
    store = Store(data_dir)
    try:
        value = store.raw_device_value(handle, device_id)
        assert value is not None
        expires_at_ms, seq = HEADER.unpack_from(value)
        device = pb.Device.FromString(value[HEADER.size :])
        record = pb.DeviceRecord.FromString(device.signed.record)
        record.endpoints[0].address = address
        device.signed.record = record.SerializeToString()
        forged = HEADER.pack(expires_at_ms, seq) + device.SerializeToString()
        store.put_raw_device_value(handle, device_id, forged)
    finally:
        store.close()


async def test_a_record_that_does_not_verify_is_refused(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(*FAST_LEASES)
    alice = await sdk_clients.user(node.grpc_target, "alice")
    # Bob's app goes away without unregistering, so his record stays in the store.
    bob = await sdk_clients.user(
        node.grpc_target, "bob", config=replace(TEST_CONFIG, unregister_on_close=False)
    )
    key = Identity.generate().public_key
    await bob.register_device("phone", transport_key=key, endpoints=[Endpoint("192.0.2.7", 5000)])
    assert (await alice.lookup(bob.handle)).devices[0].endpoints[0].address == "192.0.2.7"
    await bob.close()

    node.kill()
    redirect_endpoints(node.data_dir, bob.handle, "phone", "203.0.113.66")
    restart_on_same_port(start_supernode, node)

    with pytest.raises(SignatureError, match="does not verify"):
        await alice.lookup(bob.handle)
    with pytest.raises(SignatureError):
        await alice.lookup_many([bob.handle])
    watch = Collector(alice.watch([bob.handle]))
    with pytest.raises(SignatureError):
        await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
    await watch.close()


async def test_a_changed_account_key_for_a_pinned_handle_raises_key_changed(
    start_supernode: StartSupernode, sdk_clients: Clients, tmp_path: Path
) -> None:
    """Bob's handle means one key on the first supernode and another on a second one (a
    substituted account); Alice's pins, kept in a file, outlive her first client."""
    pins = tmp_path / "pins.json"
    first = start_supernode(data_dir=tmp_path / "first")
    second = start_supernode(data_dir=tmp_path / "second")

    alice = await sdk_clients.user(first.grpc_target, "alice", pin_store=PinStore.file(pins))
    bob = await sdk_clients.user(first.grpc_target, "bob")
    assert (await alice.lookup(bob.handle)).account.account_key == bob.identity.public_key
    await alice.close()

    impostor = sdk_clients.open(second.grpc_target, bob.handle)  # same handle, new key
    await impostor.create_account("Bob")
    alice_again = sdk_clients.open(
        second.grpc_target, alice.handle, alice.identity, pin_store=PinStore.file(pins)
    )
    await alice_again.create_account("Alice")
    with pytest.raises(KeyChanged) as changed:
        await alice_again.lookup(bob.handle)
    assert changed.value.pinned == bob.identity.public_key
    assert changed.value.served == impostor.identity.public_key
    with pytest.raises(KeyChanged):
        await alice_again.get_account(bob.handle)
    watch = Collector(alice_again.watch([bob.handle]))
    with pytest.raises(KeyChanged):
        await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
    await watch.close()
