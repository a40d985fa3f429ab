"""Failover across ``targets``: calls and watches move on when a supernode is unreachable."""

from pathlib import Path

from client_sdk import Client, EventKind, Identity, OfflineReason
from tests.integration.sdk_support import Clients, Collector, StartSupernode, unique, unused_target

KEY = Identity.generate().public_key


async def test_calls_skip_a_target_that_refuses_connections(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode()
    alice = sdk_clients.open([unused_target(), node.grpc_target], unique("alice"))
    await alice.create_account("Alice")
    await alice.register_device("laptop", transport_key=KEY)
    presence = await alice.lookup(alice.handle)
    assert [d.device_id for d in presence.devices] == ["laptop"]
    assert alice.current_target == node.grpc_target


async def test_a_watch_fails_over_to_the_next_target_and_flags_the_gap(
    start_supernode: StartSupernode, sdk_clients: Clients, tmp_path: Path
) -> None:
    first = start_supernode(data_dir=tmp_path / "first")
    second = start_supernode(data_dir=tmp_path / "second")
    # The same two accounts (same keys) on both supernodes, as a cluster would serve them.
    alice_id, bob_id = Identity.generate(), Identity.generate()
    alice_handle, bob_handle = unique("alice"), unique("bob")
    bob_on: dict[str, Client] = {}
    for node in (first, second):
        await sdk_clients.open(node.grpc_target, alice_handle, alice_id).create_account("A")
        bob_on[node.grpc_target] = sdk_clients.open(node.grpc_target, bob_handle, bob_id)
        await bob_on[node.grpc_target].create_account("Bob")

    alice = sdk_clients.open([first.grpc_target, second.grpc_target], alice_handle, alice_id)
    watch = Collector(alice.watch([bob_handle]))
    await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
    await bob_on[first.grpc_target].register_device("phone", transport_key=KEY)
    await watch.wait_for(lambda e: e.kind is EventKind.ONLINE and e.device_id == "phone")

    first.kill()
    gap = await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT and e.after_gap)
    # The second supernode never saw the phone: the gap says it is gone.
    [gone] = gap.gap_changes
    assert (gone.kind, gone.device_id, gone.reason) == (
        EventKind.OFFLINE,
        "phone",
        OfflineReason.UNKNOWN,
    )
    await bob_on[second.grpc_target].register_device("tablet", transport_key=KEY)
    await watch.wait_for(lambda e: e.kind is EventKind.ONLINE and e.device_id == "tablet")
    assert alice.current_target == second.grpc_target
    assert [d.device_id for d in (await alice.lookup(bob_handle)).devices] == ["tablet"]
    await watch.close()
