"""Acceptance 3 and 4 of replication: a node cut off from its peers (a real cut: iptables
drops between the processes, tests/cluster/netcut.py) for longer than a lease, with writes
on both sides; after the heal every replica converges to the same winner, no client ever
reads a device's seq go backwards, and an unregister made during the cut, healed after the
tombstone retention, resurrects nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from pathlib import Path

import grpc
import pytest

from client_sdk import Client, Identity
from tests.cluster import history as checks
from tests.cluster.load import (
    TRANSPORT_KEY,
    WRITER_CONFIG,
    Load,
    quorum_connections,
    sdk_users,
)
from tests.cluster.netcut import cuttable_cluster
from tests.cluster.test_replication import node_credential, versions
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


# One node, two attempts per write: the cut side's writes fail fast (W out of reach).
CUT_SIDE_CONFIG = dataclasses.replace(WRITER_CONFIG, max_attempts=2)


async def readers_first_at(targets: list[str]) -> list[Client]:
    """One SDK reader per node, starting there (then failing over to the others)."""
    made = []
    for i, target in enumerate(targets):
        client = Client(
            [target, *targets], Identity.generate(), unique(f"r{i}"), config=TEST_CONFIG
        )
        await client.create_account()
        made.append(client)
    return made


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
        history = checks.History(time.monotonic)
        users = await sdk_users(cluster.targets, 4, history, "part")
        # Written only through the node that will be cut off: it cannot reach W there.
        (cut_side,) = await sdk_users([cluster.target(2)], 1, history, "cut", CUT_SIDE_CONFIG)
        load = Load(users, history, TTL)  # writers use every node, the cut one included
        lookers = await readers_first_at(cluster.targets)
        quorum = await quorum_connections(cluster.targets)
        handles = [u.handle for u in (*users, cut_side)]
        tasks = [asyncio.create_task(load.writer(u)) for u in users]
        tasks += [asyncio.create_task(load.reader(c, handles, f"r{i}"))
                  for i, c in enumerate(lookers)]  # fmt: skip
        tasks.append(asyncio.create_task(load.quorum_reader(quorum)))
        cut_load = Load([cut_side], history, TTL)
        try:
            await asyncio.sleep(1.0)
            net.cut(2)
            for _ in range(2):  # the cut side cannot reach W: UNAVAILABLE, kept locally
                await cut_load.write(cut_side)
            await asyncio.sleep(TTL + 2)  # longer than a lease, writes on both sides
            net.heal(2)
            await asyncio.sleep(1.0)
        finally:
            await load.stop(tasks)
            await cut_load.stop([])
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
        for client in lookers:
            await client.close()
        for connection in quorum:
            await connection.close()


async def test_an_unregister_during_a_partition_healed_after_retention_stays(
    tmp_path: Path,
) -> None:
    async with cuttable_cluster(tmp_path, 3, *LEASES, "--sweep-interval-seconds", "0.2") as net:
        cluster = net.cluster
        history = checks.History(time.monotonic)
        (user,) = await sdk_users([cluster.target(0)], 1, history, "gone")  # through A
        connections = await quorum_connections(cluster.targets)  # a reader on every node
        await user.client.register_device("phone", transport_key=TRANSPORT_KEY, ttl=TTL)
        net.cut(2)  # C keeps its live copy; A and B bury it; C's hint waits on A
        # Acknowledged (it raises otherwise). Whether it reports the device as still there
        # is not what this test is about: the client itself can reach C, and an attempt
        # coordinated by C (applied there, no quorum behind the cut) that the SDK then
        # retries elsewhere may find the device already buried (seen: False in about half
        # of the runs, at c9ff798 as well).
        await user.client.unregister_device("phone")
        await user.client.close()
        await asyncio.sleep(6)  # past the lease and the tombstone retention (4 s)
        net.heal(2)
        credential = await node_credential(cluster)
        rng = random.Random(3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded: reads on every node, both kinds
            connection = rng.choice(connections)
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
