"""The SDK against real supernodes: watch, automatic renewal, restarts, a dead app.

Acceptance tests 1-4 of the client SDK. Every supernode is a real process on loopback,
restarted with SIGKILL on the same data dir and port where a test needs it.
"""

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from client_sdk import (
    Client,
    DeviceStatus,
    Endpoint,
    EventKind,
    Identity,
    InvalidArgument,
    OfflineReason,
    PresenceEvent,
    RateLimited,
)
from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import (
    FAST_LEASES,
    TEST_CONFIG,
    Clients,
    Collector,
    StartSupernode,
    restart_on_same_port,
    unique,
)
from tests.integration.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
KEY = Identity.generate().public_key


def is_change(kind: EventKind, device_id: str) -> Callable[[PresenceEvent], bool]:
    return lambda e: e.kind is kind and e.device_id == device_id


async def test_watch_delivers_snapshot_then_each_change_in_order(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    target = supernode.grpc_target
    alice = await sdk_clients.user(target, "alice")
    bob = await sdk_clients.user(target, "bob")
    watch = Collector(alice.watch([bob.handle]))
    await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)

    await bob.register_device("phone", transport_key=KEY, endpoints=[Endpoint("192.0.2.7", 5000)])
    await bob.update_status("phone", DeviceStatus.AWAY)
    assert await bob.unregister_device("phone")
    await watch.wait_for(is_change(EventKind.OFFLINE, "phone"))

    kinds = [(e.kind, e.device.status if e.device else e.reason) for e in watch.events]
    assert kinds == [
        (EventKind.SNAPSHOT, None),
        (EventKind.ONLINE, DeviceStatus.ONLINE),
        (EventKind.UPDATED, DeviceStatus.AWAY),
        (EventKind.OFFLINE, OfflineReason.UNREGISTERED),
    ]
    snapshot = watch.events[0].snapshot
    assert snapshot is not None and snapshot[bob.handle].devices == ()
    assert not watch.events[0].after_gap
    online = watch.events[1].device
    assert online is not None and online.endpoints == (Endpoint("192.0.2.7", 5000),)
    assert online.transport_key == KEY and online.handle == bob.handle
    revisions = [e.position.revision for e in watch.events]
    assert revisions == sorted(revisions) and len(set(revisions[1:])) == 3
    await watch.close()


async def test_a_dead_app_goes_offline_when_its_lease_runs_out(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    alice = await sdk_clients.user(supernode.grpc_target, "alice")
    bob_handle = unique("bob")
    watch = Collector(alice.watch([bob_handle]))  # before Bob's account even exists
    first = await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
    assert first.not_found == (bob_handle,)

    app = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.sdk_device_app",
        supernode.grpc_target,
        bob_handle,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert app.stdout is not None
        async with asyncio.timeout(60):
            line = await app.stdout.readline()
        assert line.decode().strip() == "registered ttl=1", line
        await watch.wait_for(is_change(EventKind.ONLINE, "phone"))

        # The SDK in the app renews the 1 s lease by itself: let a few renewals land. They
        # change nothing a watcher sees, so the server counts them but tells no watcher.
        async def renewed_thrice() -> bool:
            return supernode.total("supernode_device_changes_total", change="renewed") >= 3

        await eventually(renewed_thrice, what="three renewals")
        assert not [e for e in watch.events if e.kind is EventKind.UPDATED]
        app.send_signal(signal.SIGKILL)
        await app.wait()
        killed_at = time.monotonic()
    finally:
        if app.returncode is None:
            app.kill()
            await app.wait()

    offline = await watch.wait_for(is_change(EventKind.OFFLINE, "phone"))
    waited = time.monotonic() - killed_at
    assert offline.reason is OfflineReason.EXPIRED
    # TTL 1 s + sweep 0.2 s, plus scheduling slack on a shared machine.
    assert waited < 1.0 + 0.2 + 1.0, waited
    assert watch.events.index(offline) == len(watch.events) - 1  # nothing after it
    await watch.close()


async def test_watch_survives_a_supernode_restart_and_flags_the_resnapshot(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(*FAST_LEASES)
    target = node.grpc_target
    alice = await sdk_clients.user(target, "alice")
    bob = await sdk_clients.user(target, "bob")
    watch = Collector(alice.watch([bob.handle]))
    await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
    await bob.register_device("phone", transport_key=KEY, ttl=60)
    await watch.wait_for(is_change(EventKind.ONLINE, "phone"))
    before = len(watch.events)

    restart_on_same_port(start_supernode, node)
    # Right after the restart, racing Alice's reconnect: this lands either in the
    # re-snapshot (and its gap_changes) or as a live event after it; never nowhere.
    await bob.register_device("laptop", transport_key=KEY, ttl=60)
    gap = await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT and e.after_gap)
    assert gap.position.epoch != watch.events[0].position.epoch  # a new server epoch
    assert gap.snapshot is not None
    assert {d.device_id for d in gap.snapshot[bob.handle].devices} <= {"phone", "laptop"}

    # After the re-snapshot: changes arrive live again, in order.
    await bob.update_status("phone", DeviceStatus.BUSY)
    await bob.unregister_device("laptop")
    await watch.wait_for(is_change(EventKind.OFFLINE, "laptop"))
    await watch.wait_for(
        lambda e: (
            e.kind is EventKind.UPDATED
            and e.device is not None
            and e.device.status is DeviceStatus.BUSY
        )
    )
    after = watch.events[before:]
    laptop_online = [
        e
        for e in (*after, *gap.gap_changes)
        if e.kind is EventKind.ONLINE and e.device_id == "laptop"
    ]
    assert len(laptop_online) == 1  # delivered exactly once: live or in gap_changes
    assert [e.kind for e in after if e.device_id == "laptop"][-1] is EventKind.OFFLINE
    assert alice.current_target == target
    await watch.close()


async def test_devices_stay_online_with_no_app_code_and_come_back_after_a_restart(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(*FAST_LEASES)
    target = node.grpc_target
    bob = await sdk_clients.user(target, "bob")
    alice = await sdk_clients.user(target, "alice")
    registration = await bob.register_device("phone", transport_key=KEY, ttl=1)
    assert registration.ttl_seconds == 1

    # Over four lease periods, every lookup finds the device, renewed again and again.
    seqs: set[int] = set()
    loop = asyncio.get_running_loop()
    until = loop.time() + 4 * registration.ttl_seconds
    while loop.time() < until:
        presence = await alice.lookup(bob.handle)
        assert [d.device_id for d in presence.devices] == ["phone"]
        seqs.add(presence.devices[0].seq)
        await asyncio.sleep(0.1)
    assert len(seqs) >= 4, seqs

    # The supernode dies and stays down until the lease has run out...
    node.kill()
    last = bob.registration("phone")
    assert last is not None

    async def lease_over() -> bool:
        # One more TTL covers a renewal the server took but never acknowledged.
        return time.time() * 1000 > last.expires_at_ms + 1200

    await eventually(lease_over, within=5)
    restart_on_same_port(start_supernode, node)

    # ...and the SDK re-registers the device on its own once it is back.
    async def back_online() -> bool:
        devices = (await alice.lookup(bob.handle)).devices
        return bool(devices) and devices[0].seq > max(seqs)

    await eventually(back_online, within=15)
    assert bob.registration("phone") != last


async def test_tokens_are_renewed_and_a_refused_token_is_replaced_transparently(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    """Tokens live 2 s here. Bob's client refreshes his before they expire; Alice's clock
    runs 30 s late, so she believes an expired token is fresh: the supernode refuses it
    and her client logs in again by itself. Neither app sees an error."""
    node = start_supernode(*FAST_LEASES, "--token-ttl-seconds", "2")
    bob = await sdk_clients.user(node.grpc_target, "bob")
    alice_late = Client(
        node.grpc_target,
        Identity.generate(),
        unique("alice"),
        config=TEST_CONFIG,
        clock=lambda: time.time() - 30,
    )
    sdk_clients.opened.append(alice_late)
    await alice_late.create_account("Alice")
    await bob.register_device("phone", transport_key=KEY, ttl=1)

    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * 2  # three token lifetimes
    while loop.time() < until:
        assert [d.device_id for d in (await alice_late.lookup(bob.handle)).devices] == ["phone"]
        await asyncio.sleep(0.2)

    text = node.metrics()
    # Lookups are answered by whichever process has the connection (--workers).
    assert node.total("supernode_rpc_requests_total", method="Lookup", code="UNAUTHENTICATED")
    assert sample(text, "supernode_rpc_requests_total", method="Login", code="OK") >= 5
    # Bob's clock is right: his client always logged in before the token ran out.
    assert not sample(
        text, "supernode_rpc_requests_total", method="RegisterDevice", code="UNAUTHENTICATED"
    )


async def test_a_watcher_cut_off_for_reading_slowly_resumes_without_losing_a_change(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    """The app stops reading while Bob changes 400 times; the supernode's queue for the
    watcher (8 events) overflows and it cuts the stream. The SDK resumes from its last
    position, and the app then reads every change, in order, with no gap snapshot."""
    node = start_supernode(*FAST_LEASES, "--limits-watch-queue-events", "8")
    # Small HTTP/2 windows, so a reader that stops reading pushes back on the server soon.
    small_windows = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384))
    config = replace(TEST_CONFIG, watch_buffer=1, channel_options=small_windows)
    alice = await sdk_clients.user(node.grpc_target, "alice", config=config)
    bob = await sdk_clients.user(node.grpc_target, "bob")
    watch = alice.watch([bob.handle])
    first = await anext(watch)
    assert first.kind is EventKind.SNAPSHOT

    await bob.register_device("phone", transport_key=KEY, ttl=60)
    changes = 400
    for index in range(changes):
        status = DeviceStatus.AWAY if index % 2 else DeviceStatus.BUSY
        await bob.update_status("phone", status)
    registration = bob.registration("phone")
    assert registration is not None
    last_seq = registration.seq

    seqs: list[int] = []
    async with asyncio.timeout(30):
        async for event in watch:
            assert event.kind in (EventKind.ONLINE, EventKind.UPDATED), event
            assert event.device is not None
            seqs.append(event.device.seq)
            if event.device.seq == last_seq:
                break
    assert len(seqs) == changes + 1 and seqs == sorted(seqs)
    assert watch.reconnects >= 1  # it was cut off, and resumed
    text = node.metrics()
    assert sample(text, "supernode_rpc_requests_total", method="Watch", code="RESOURCE_EXHAUSTED")
    await watch.close()


async def test_watch_limits_reach_the_app_as_errors(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode(
        "--limits-max-watch-handles", "2", "--limits-max-watches-per-session", "1"
    )
    alice = await sdk_clients.user(node.grpc_target, "alice")
    with pytest.raises(InvalidArgument, match="handles"):
        await anext(alice.watch(["bob", "carol", "dave"]))
    first = alice.watch(["bob"])
    assert (await anext(first)).kind is EventKind.SNAPSHOT
    with pytest.raises(RateLimited, match="watch"):
        await anext(alice.watch(["carol"]))
    await first.close()
