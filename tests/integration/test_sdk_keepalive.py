"""Renewals by keepalive against a real supernode: the SDK extends its registered record's
lease without signing a new one, watchers are told nothing, and whenever the supernode
cannot extend it the SDK registers anew."""

import dataclasses

from client_sdk import Consistency, EventKind, Identity
from client_sdk.transport import DirectoryConnection
from tests.integration.records import device
from tests.integration.sdk_support import (
    FAST_LEASES,
    TEST_CONFIG,
    Clients,
    StartSupernode,
    watching,
)
from tests.integration.waiting import eventually

KEY = Identity.generate().public_key
KEEPALIVE = dataclasses.replace(TEST_CONFIG, keepalive=True)


async def test_an_unchanged_device_is_kept_alive_without_new_records_or_watch_events(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(*FAST_LEASES)
    target = node.grpc_target
    alice = await sdk_clients.user(target, "alice")
    bob = await sdk_clients.user(target, "bob", config=KEEPALIVE)
    watch = await watching(alice, bob.handle)
    registered = await bob.register_device("phone", transport_key=KEY, ttl=2)
    await watch.wait_for(lambda e: e.kind is EventKind.ONLINE)

    async def kept_alive_thrice() -> bool:
        return node.calls("KeepAlive") >= 3

    await eventually(kept_alive_thrice, what="three keepalives")  # past two 2 s leases
    assert node.calls("RegisterDevice") == 1, "no new record was signed"
    lease = bob.registration("phone")
    assert lease is not None and lease.seq == registered.seq
    assert lease.expires_at_ms > registered.expires_at_ms
    presence = await alice.lookup(bob.handle, Consistency.QUORUM)  # from the server
    [served] = presence.devices
    assert served.seq == registered.seq and served.expires_at_ms > registered.expires_at_ms
    # The watcher saw the device come online once, and nothing since: nothing changed.
    assert [e.kind for e in watch.events] == [EventKind.SNAPSHOT, EventKind.ONLINE]
    assert node.total("supernode_device_changes_total", change="renewed") >= 3
    await watch.close()


async def test_a_device_whose_record_was_replaced_registers_anew(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(*FAST_LEASES)
    target = node.grpc_target
    bob = await sdk_clients.user(target, "bob", config=KEEPALIVE)
    registered = await bob.register_device("phone", transport_key=KEY, ttl=2)
    # Another client of the account replaces the record (the next seq): the SDK's next
    # keepalive is refused (STALE_SEQ), and it registers its own record again.
    async with DirectoryConnection(target) as other:
        await other.login(bob.identity, bob.handle)
        await other.register_device(
            device(bob.identity, bob.handle, "phone", seq=registered.seq + 1)
        )

    async def registered_anew() -> bool:
        lease = bob.registration("phone")
        return lease is not None and lease.seq > registered.seq + 1

    await eventually(registered_anew, what="a new registration after STALE_SEQ")
    assert node.calls("KeepAlive", "FAILED_PRECONDITION") >= 1
    assert bob.registration("phone") is not None


async def test_by_default_every_renewal_is_a_new_record(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(*FAST_LEASES)
    bob = await sdk_clients.user(node.grpc_target, "bob")  # keepalive is off by default
    await bob.register_device("phone", transport_key=KEY, ttl=1)

    async def renewed_twice() -> bool:
        return node.calls("RegisterDevice") >= 3

    await eventually(renewed_twice, what="two renewals")
    assert node.calls("KeepAlive") == 0
