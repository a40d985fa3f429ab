"""Lookups of watched contacts from the watch, against a real supernode: no call while the
watch is in sync and the lease known to run, the server again once it may have ended, after
an unregister the watch delivered, and across a supernode restart."""

import asyncio
import dataclasses
import time

from client_sdk import Client, ClientConfig, DeviceStatus, EventKind, Identity, Unavailable
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import (
    FAST_LEASES,
    TEST_CONFIG,
    Clients,
    Collector,
    StartSupernode,
    restart_on_same_port,
    watching,
)
from tests.integration.waiting import eventually

KEY = Identity.generate().public_key


def lookups(node: SupernodeProcess) -> float:
    return node.calls("Lookup") + node.calls("LookupMany")


async def bob_watched_by_app(
    start_supernode: StartSupernode,
    sdk_clients: Clients,
    ttl: int,
    config: ClientConfig = TEST_CONFIG,
) -> tuple[SupernodeProcess, Client, Client, Collector]:
    """A node, Bob with a phone on a ``ttl`` lease, and an app watching him (snapshot in)."""
    node = start_supernode(*FAST_LEASES)
    bob = await sdk_clients.user(node.grpc_target, "bob")
    await bob.register_device("phone", transport_key=KEY, ttl=ttl)
    app = await sdk_clients.user(node.grpc_target, "app", config=config)
    return node, bob, app, await watching(app, bob.handle)


async def test_a_watched_contact_is_answered_in_process_until_it_changes(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node, bob, app, watch = await bob_watched_by_app(start_supernode, sdk_clients, ttl=60)
    before = lookups(node)
    for _ in range(20):
        presence = await app.lookup(bob.handle)
        assert [d.device_id for d in presence.devices] == ["phone"]
    assert lookups(node) == before, "a watched contact in sync needs no call"
    assert app.contacts.hits >= 20

    # A change reaches the answer once the watch delivered it; never an older record.
    await bob.update_status("phone", DeviceStatus.AWAY)
    await watch.wait_for(lambda e: e.kind is EventKind.UPDATED)
    assert (await app.lookup(bob.handle)).devices[0].status is DeviceStatus.AWAY
    await bob.unregister_device("phone")
    await watch.wait_for(lambda e: e.kind is EventKind.OFFLINE)
    assert (await app.lookup(bob.handle)).devices == ()

    # A handle not watched is still asked for.
    carol = await sdk_clients.user(node.grpc_target, "carol")
    before = lookups(node)
    await app.lookup(carol.handle)
    assert lookups(node) == before + 1
    await watch.close()


async def test_a_lease_that_may_have_ended_is_asked_for_and_an_ended_one_is_never_served(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    # A 3 s lease against a 5 s margin: every lookup of it goes to the server.
    node, bob, app, watch = await bob_watched_by_app(start_supernode, sdk_clients, ttl=3)
    before = lookups(node)
    await app.lookup(bob.handle)
    assert lookups(node) == before + 1
    assert app.contacts.misses >= 1

    # With no margin, the lease seen by the watch answers until it ends; the device's SDK
    # renews it (new records the watch is not told of), and lookups keep finding it.
    loose = dataclasses.replace(TEST_CONFIG, contacts_cache_margin_seconds=0)
    app2 = await sdk_clients.user(node.grpc_target, "app2", config=loose)
    watch2 = await watching(app2, bob.handle)
    deadline = time.monotonic() + 6  # two lease periods: renewals happened
    while time.monotonic() < deadline:
        presence = await app2.lookup(bob.handle)
        [device] = presence.devices
        assert device.expires_at_ms > time.time() * 1000 - 1, "an ended lease was served"
        await asyncio.sleep(0.01)  # an answer from memory never waits: let Bob's SDK renew
    assert app2.contacts.hits and app2.contacts.misses  # from the watch, and renewed

    # The device stops renewing (its app dies): once the lease ends, no lookup shows it.
    await bob.close()

    async def gone() -> bool:
        return (await app2.lookup(bob.handle)).devices == ()

    await eventually(gone, what="the device gone after its lease")
    await watch.close()
    await watch2.close()


async def test_across_a_supernode_restart_lookups_go_to_the_server_until_the_watch_resyncs(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    impatient = dataclasses.replace(TEST_CONFIG, max_attempts=1)
    node, bob, app, watch = await bob_watched_by_app(
        start_supernode, sdk_clients, ttl=60, config=impatient
    )
    await app.lookup(bob.handle)
    assert app.contacts.hits == 1

    node.kill()

    async def refused() -> bool:  # the watch notices the stream broke; then no cached answer
        try:
            await app.lookup(bob.handle)
        except Unavailable:
            return True
        return False

    await eventually(refused, what="lookups sent to the (dead) server")
    restarted = restart_on_same_port(start_supernode, node)
    await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT and e.after_gap)
    hits = app.contacts.hits
    before = lookups(restarted)
    await eventually(lambda: _answered_locally(app, bob.handle, hits), what="cache in use")
    assert lookups(restarted) == before
    await watch.close()


async def _answered_locally(app: Client, handle: str, hits: int) -> bool:
    await app.lookup(handle)
    return app.contacts.hits > hits
