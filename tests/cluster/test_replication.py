"""Replicated presence under node loss: a restarted node converges to its peers (every
record, tombstones included) through hints and repair, within one lease period."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.transport import DirectoryConnection, now_ms
from supernode.cluster.etcd import EtcdClient, EtcdConfig
from supernode.internal.v1 import cluster_pb2 as pb
from supernode.sessions import SessionAuthority
from tests.cluster.harness import Cluster, running_cluster
from tests.cluster.test_cluster_routing import mirrored
from tests.integration.records import device
from tests.integration.sdk_support import unique
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
USERS = 20
TTL = 60  # the lease the devices ask for: convergence must come well within it


async def node_credential(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    """A node token, as an operator's tool with the cluster's secret would mint one."""
    async with EtcdClient(EtcdConfig(tuple(cluster.etcd.client_endpoints))) as etcd:
        entry = await etcd.get(cluster.keys.token_secret)
    assert entry is not None
    issued = SessionAuthority(entry.value, clock_ms=now_ms).issue_node_token("test")
    return (("authorization", f"Bearer {issued.token}"),)


async def versions(
    target: str, handle: str, credential: tuple[tuple[str, str], ...]
) -> list[tuple[str, int, int, bool]]:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/supernode.internal.v1.ClusterService/Versions")
        request = pb.ReplicaLookupRequest(handles=[handle]).SerializeToString()
        raw = await call(request, metadata=credential, timeout=5)
    held = pb.VersionsResponse.FromString(raw).versions
    return sorted((v.device_id, v.seq, v.expires_at_ms, not v.device) for v in held)


async def test_a_restarted_node_converges_to_its_peers_within_a_lease(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        a, b, c = cluster.targets
        users: list[tuple[str, Identity]] = []
        async with DirectoryConnection(a) as on_a:
            for n in range(USERS):
                handle, identity = unique(f"conv{n}"), Identity.generate()
                await on_a.create_account(identity, handle)
                users.append((handle, identity))
            for target in (b, c):
                async with DirectoryConnection(target) as connection:
                    await mirrored(connection, users[-1][0])
        cluster.kill(2)
        for n, (handle, identity) in enumerate(users):  # writes C misses, through A and B
            async with DirectoryConnection(a if n % 2 else b) as connection:
                await connection.login(identity, handle)
                await connection.register_device(device(identity, handle, "phone", ttl=TTL))
                await connection.register_device(device(identity, handle, "tablet", ttl=TTL))
                if n % 3 == 0:
                    assert await connection.unregister_device("tablet")
        credential = await node_credential(cluster)
        cluster.start(2)
        started = time.monotonic()

        async def converged() -> bool:
            for handle, _ in users:
                expected = await versions(a, handle, credential)
                if await versions(c, handle, credential) != expected:
                    return False
                assert expected == await versions(b, handle, credential)
            return True

        await eventually(converged, TTL, "node C equal to its peers")
        took = time.monotonic() - started
        print(f"\nconvergence after restart: {took:.2f} s for {USERS} users, 2 devices each")
        assert took < TTL
