"""The cluster without its coordination store: etcd stopped entirely, or one of three etcd
members lost (acceptance 3 and 4 of the issue). The hot paths never call etcd, so they go
on; only what needs cluster-wide agreement (claiming a handle) waits, and says why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client_sdk import DeviceStatus, EventKind, Identity
from client_sdk.transport import DirectoryConnection
from tests.cluster.harness import running_cluster
from tests.cluster.test_cluster_routing import mirrored
from tests.integration.metrics import sample
from tests.integration.sdk_support import Clients, Collector, unique
from tests.integration.test_rendezvous_server import Peer, offer_and_answer
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
KEY = Identity.generate().public_key
COORDINATION = "supernode.cluster.etcd"


async def coordination_health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        response = await stub.Check(health_pb2.HealthCheckRequest(service=COORDINATION))
        return int(response.status)


async def test_everything_but_account_creation_survives_etcd_stopping(
    tmp_path: Path, sdk_clients: Clients
) -> None:
    async with running_cluster(tmp_path) as cluster:
        a, b, c = cluster.targets
        bob = await sdk_clients.user(b, "bob")
        alice = await sdk_clients.user(c, "alice")
        async with DirectoryConnection(a) as on_a, DirectoryConnection(b) as on_b:
            caller = await Peer.create(on_a, "alice")
            callee = await Peer.create(on_b, "bob")
            for target in cluster.targets:
                async with DirectoryConnection(target) as connection:
                    for handle in (bob.handle, alice.handle, "alice", "bob"):
                        await mirrored(connection, handle)
            first = await bob.register_device("phone", transport_key=KEY, ttl=3)
            watch = Collector(alice.watch([bob.handle]))
            await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)

            await cluster.etcd.kill(0)

            async def degraded() -> bool:
                return await coordination_health(a) == health_pb2.HealthCheckResponse.NOT_SERVING

            await eventually(degraded, 15, "node A reports etcd unreachable")
            assert sample(cluster.node(0).metrics(), "supernode_cluster_etcd_reachable") == 0

            # Creating an account needs etcd: UNAVAILABLE, and the message says why.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await on_a.create_account(Identity.generate(), unique("late"))
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "etcd" in (refused.value.details() or "")

            # Renewals go on (the lease is renewed past its first end) ...
            async def renewed() -> bool:
                current = bob.registration("phone")
                return current is not None and current.expires_at_ms > first.expires_at_ms + 1500

            await eventually(renewed, 15, "a renewal while etcd is down")
            # ... lookups on every node, watches across nodes, and rendezvous across nodes.
            for target in cluster.targets:
                async with DirectoryConnection(target) as connection:
                    await connection.login(alice.identity, alice.handle)
                    assert len((await connection.lookup(bob.handle)).devices) == 1
            await bob.update_status("phone", DeviceStatus.BUSY)
            await watch.wait_for(lambda e: e.kind is EventKind.UPDATED)
            listening = callee.listen()
            assert (await listening.read()).HasField("ready")
            async with asyncio.timeout(30):
                await offer_and_answer(caller, callee, listening)
            listening.cancel()

            # A node restarted while etcd is down serves from its mirror: a QUORUM read at
            # once; its own replica (ONE) as soon as the hints for it are replayed.
            cluster.kill(2)
            cluster.start(2)
            async with DirectoryConnection(c) as connection:
                await connection.login(alice.identity, alice.handle)
                quorum = await connection.lookup(bob.handle, quorum=True)
                assert len(quorum.devices) == 1

                async def caught_up() -> bool:
                    return len((await connection.lookup(bob.handle)).devices) == 1

                await eventually(caught_up, 15, "the restarted replica caught up")

            await cluster.etcd.restart(0)

            async def creates() -> bool:
                try:
                    await on_a.create_account(Identity.generate(), unique("back"))
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
                    return False
                return True

            await eventually(creates, 30, "account creation once etcd is back")
            for target in cluster.targets:

                async def serving(target: str = target) -> bool:
                    status = await coordination_health(target)
                    return status == health_pb2.HealthCheckResponse.SERVING

                await eventually(serving, 30, f"{target} reports etcd reachable again")
            await watch.close()


async def test_losing_one_of_three_etcd_members_changes_nothing(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2, etcd_members=3) as cluster:
        a, b = cluster.targets
        await cluster.etcd.kill(0)
        identity = Identity.generate()
        async with DirectoryConnection(a) as on_a, DirectoryConnection(b) as on_b:
            for n in range(5):  # claims keep working through the other two members
                handle = unique(f"quorum{n}")
                await on_a.create_account(identity, handle)
                await mirrored(on_b, handle)
            await on_b.login(identity, handle)
            assert (await on_b.lookup(handle)).account.handle == handle
        for index in (0, 1):
            assert sample(cluster.node(index).metrics(), "supernode_cluster_etcd_reachable") == 1
