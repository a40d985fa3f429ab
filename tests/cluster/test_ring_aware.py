"""The ring-aware SDK (issue 15, acceptance 3): straight to a replica, following epochs.

A client given only one node learns the placement from it and sends every lookup to a
replica of the handle; the nodes' forwarded-call counters show that no node had to pass
the call on. Then a 4th node joins, partitions move, and the client, after any answer that
shows the new epoch, routes by the new placement before its next call. A client with ring
awareness off keeps the plain (proxied) path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from client_sdk import Client, Identity
from client_sdk.transport import DirectoryConnection
from tests.cluster.harness import Cluster, running_cluster
from tests.cluster.test_cluster_routing import mirrored
from tests.integration.sdk_support import TEST_CONFIG, unique

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
HANDLES = 40
LOOKUPS = 400


def forwarded_lookups(cluster: Cluster) -> float:
    return sum(
        node.total("supernode_cluster_forwarded_calls_total", method="Lookup")
        for node in cluster.nodes
        if node is not None
    )


async def test_lookups_go_straight_to_a_replica_and_follow_epochs(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 4, started=3) as cluster:
        handles = []
        for n in range(HANDLES):
            owner = Client(
                cluster.targets[:3], Identity.generate(), unique(f"ring{n}"), config=TEST_CONFIG
            )
            await owner.create_account()
            handles.append(owner.handle)
            await owner.close()
        client = Client(
            cluster.target(0),
            Identity.generate(),
            unique("ringreader"),
            config=dataclasses.replace(TEST_CONFIG, ring_aware=True),
        )
        await client.create_account()
        plain = Client(
            cluster.target(0),
            Identity.generate(),
            unique("plainreader"),
            config=dataclasses.replace(TEST_CONFIG, ring_aware=False),
        )
        await plain.create_account()
        for target in cluster.targets[:3]:  # every node's mirror has every account
            async with DirectoryConnection(target) as connection:
                await connection.login(client.identity, client.handle)
                await mirrored(connection, handles[-1])
        await client.lookup(handles[0])  # learns the ring
        placement = await cluster.placement()
        assert placement is not None and client.routing.ring_epoch == placement.epoch

        before = forwarded_lookups(cluster)
        direct_before = client.routing.to_replica
        for i in range(LOOKUPS):
            await client.lookup(handles[i % HANDLES])
        forwarded = forwarded_lookups(cluster) - before
        direct = client.routing.to_replica - direct_before
        print(
            f"\nring-aware: {direct} of {LOOKUPS} lookups to a replica, {forwarded:.0f} forwarded"
        )
        assert direct >= 0.99 * LOOKUPS and forwarded <= 0.01 * LOOKUPS

        before = forwarded_lookups(cluster)
        for i in range(100):
            await plain.lookup(handles[i % HANDLES])
        assert plain.routing.ring_epoch == 0
        # node 0 holds every partition with 3 nodes and RF 3: the plain path is local too
        assert forwarded_lookups(cluster) - before == 0

        cluster.start(3)
        settled = await cluster.wait_placed_on(set(cluster.targets), within=120)
        await client.lookup(handles[0])  # an answer showing the new epoch...
        assert client.routing.ring_epoch == settled.epoch  # ...followed before the next call
        before = forwarded_lookups(cluster)
        direct_before = client.routing.to_replica
        for i in range(LOOKUPS):
            await client.lookup(handles[i % HANDLES])
        direct = client.routing.to_replica - direct_before
        forwarded = forwarded_lookups(cluster) - before
        print(f"after the join: {direct} of {LOOKUPS} to a replica, {forwarded:.0f} forwarded")
        assert direct >= 0.99 * LOOKUPS and forwarded <= 0.01 * LOOKUPS
        # the plain path now proxies the handles node 0 holds no replica of
        before = forwarded_lookups(cluster)
        for i in range(100):
            await plain.lookup(handles[i % HANDLES])
        proxied = forwarded_lookups(cluster) - before
        print(f"plain client after the join: {proxied:.0f} of 100 lookups forwarded")
        assert proxied > 0
        await client.close()
        await plain.close()
