"""Acceptance 3 and 4 of replication: a node cut off from its peers (a real cut: iptables
drops between the processes, tests/cluster/netcut.py) for longer than a lease, with writes
on both sides; after the heal every replica converges to the same winner, no client ever
reads a device's seq go backwards, and an unregister made during the cut, healed after the
tombstone retention, resurrects nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import grpc
import pytest

from client_sdk import Client, Identity
from client_sdk.transport import DirectoryConnection
from supernode.transport import PEER_RECONNECT_OPTIONS
from tests.cluster import history as checks
from tests.cluster.netcut import cuttable_cluster
from tests.cluster.test_cluster_routing import mirrored
from tests.cluster.test_kill_loop import Load, User
from tests.cluster.test_replication import node_credential, versions
from tests.integration.records import device
from tests.integration.sdk_support import TEST_CONFIG, unique
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
TTL = 3
# Short leases and tombstone retention, so "longer than a lease" and "after the retention"
# fit in a test: retention = max(max TTL + skew, 2 skew + margin) = 4 s here.
LEASES = (
    "--lease-max-ttl-seconds", "3", "--lease-default-ttl-seconds", "3",
    "--lease-max-clock-skew-seconds", "1", "--lease-tombstone-margin-seconds", "1",
)  # fmt: skip


async def users_on(targets: list[str], count: int) -> list[User]:
    setup = DirectoryConnection(targets[0])
    users = []
    for n in range(count):
        identity, handle = Identity.generate(), unique(f"part{n}")
        await setup.create_account(identity, handle)
        await setup.login(identity, handle)
        connections = [DirectoryConnection(t, options=PEER_RECONNECT_OPTIONS) for t in targets]
        for connection in connections:
            connection.token = setup.token
            await mirrored(connection, handle)
        users.append(User(handle, identity, connections))
    await setup.close()
    return users


Winners = dict[tuple[str, str], tuple[int, bool]]


async def winners(
    targets: list[str], handles: list[str], credential: tuple[tuple[str, str], ...]
) -> list[Winners]:
    """Per node: (handle, device) -> (seq, tombstone) of the winner it holds."""
    held = []
    for target in targets:
        mine: Winners = {}
        for handle in handles:
            for device_id, seq, _expires, tombstone in await versions(target, handle, credential):
                key = (handle, device_id)
                mine[key] = max(mine.get(key, (0, False)), (seq, tombstone))
        held.append(mine)
    return held


async def test_a_partitioned_node_converges_and_no_read_goes_backwards(tmp_path: Path) -> None:
    async with cuttable_cluster(tmp_path, 3, *LEASES) as net:
        cluster = net.cluster
        users = await users_on(cluster.targets, 5)
        cut_side = users.pop()  # written only through the node that will be cut off
        history = checks.History(time.monotonic)
        load = Load(cluster, users, history)
        # Writers use every node, the cut one included (its writes cannot reach W there).
        readers = [
            Client(
                [cluster.target(i), *cluster.targets],
                Identity.generate(),
                unique(f"r{i}"),
                config=TEST_CONFIG,
            )
            for i in range(3)
        ]
        for client in readers:
            await client.create_account()
        handles = [u.handle for u in (*users, cut_side)]
        tasks = [asyncio.create_task(load.writer(u)) for u in users]
        tasks += [asyncio.create_task(load.reader(c, handles, f"r{i}"))
                  for i, c in enumerate(readers)]  # fmt: skip
        tasks.append(asyncio.create_task(load.quorum_reader(users[0].connections)))
        try:
            await asyncio.sleep(1.0)
            net.cut(2)
            cut_load = Load(cluster, [cut_side], history)
            cut_side.connections = [cut_side.connections[2]]  # only the cut node
            for _ in range(2):  # the cut side cannot reach W: UNAVAILABLE, kept locally
                await cut_load.write(cut_side)
            await asyncio.sleep(TTL + 2)  # longer than a lease, writes on both sides
            net.heal(2)
            await asyncio.sleep(1.0)
        finally:
            load.stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        credential = await node_credential(cluster)

        async def converged() -> bool:
            held = await winners(cluster.targets, handles, credential)
            return held[0] == held[1] == held[2]

        await eventually(converged, 30, "every replica holds the same winners after the heal")
        final = (await winners(cluster.targets, handles, credential))[0]
        violations = (
            checks.non_monotonic_reads(history)
            + checks.stale_quorum_reads(history, margin=1.0)
            + checks.lost_writes(history, final, read_at=time.monotonic(), margin=1.0)
            + checks.resurrections(history, final)
        )
        assert violations == [], "\n".join(violations[:20])
        report = checks.summary(history)
        print(f"\npartition: {report}")
        assert report["register.ok"] > 20 and report.get("register.unknown", 0) > 0
        for client in readers:
            await client.close()
        for connection in (c for u in users for c in u.connections):
            await connection.close()


async def test_an_unregister_during_a_partition_healed_after_retention_stays(
    tmp_path: Path,
) -> None:
    async with cuttable_cluster(tmp_path, 3, *LEASES, "--sweep-interval-seconds", "0.2") as net:
        cluster = net.cluster
        (user,) = await users_on(cluster.targets, 1)
        on_a = user.connections[0]
        await on_a.register_device(device(user.identity, user.handle, "phone", 1, ttl=TTL))
        net.cut(2)  # C keeps its live copy; A and B bury it; C's hint waits on A
        assert await on_a.unregister_device("phone")
        await asyncio.sleep(6)  # past the lease and the tombstone retention (4 s)
        net.heal(2)
        credential = await node_credential(cluster)
        rng = random.Random(3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded: reads on every node, both kinds
            connection = rng.choice(user.connections)
            try:
                quorum = rng.random() < 0.5
                answer = await connection.lookup(user.handle, deadline=5, quorum=quorum)
            except grpc.aio.AioRpcError:
                continue
            assert answer.devices == [], "an unregistered device came back"
            await asyncio.sleep(0.1)
        for target in cluster.targets:
            for _device_id, _seq, _expires, tombstone in await versions(
                target, user.handle, credential
            ):
                assert tombstone, f"{target} holds a live phone after the heal"
