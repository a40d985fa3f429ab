"""Revocation in a real cluster: a token logged out on node A is refused on node B within
the stated bound (polled with a deadline; the time it took is printed), RevokeSessions on
B ends A's sessions too, a node restarted afterwards still refuses them, and each entry
leaves etcd by itself when its lease (the tokens' remaining lifetime) ends."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from client_sdk.transport import DirectoryConnection
from supernode.cluster.etcd import EtcdClient, EtcdConfig
from tests.cluster.harness import Cluster, running_cluster
from tests.integration.conftest import new_user
from tests.integration.waiting import eventually

# README "Sessions": a revocation reaches every node whose etcd watch is connected within
# this bound (measured: milliseconds on loopback). Polled up to it, never slept.
PROPAGATION_BOUND_S = 2.0
TOKEN_TTL_S = 20  # short, so the revocations' leases end within the test


async def refused(connection: DirectoryConnection, handle: str) -> bool:
    try:
        await connection.lookup(handle)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc.details()
        assert "session ended" in (exc.details() or ""), exc.details()
        return True
    return False


async def until_refused(connection: DirectoryConnection, handle: str, what: str) -> float:
    """Seconds until the connection's token is refused (at most the bound)."""
    started = time.monotonic()
    await eventually(lambda: refused(connection, handle), PROPAGATION_BOUND_S, what)
    return time.monotonic() - started


async def revoked_keys(cluster: Cluster) -> list[bytes]:
    async with EtcdClient(EtcdConfig(tuple(cluster.etcd.client_endpoints))) as etcd:
        snapshot = await etcd.get_prefix(cluster.keys.revoked)
    return [entry.key for entry in snapshot.entries]


async def test_logout_and_revocation_reach_every_node(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2, "--token-ttl-seconds", str(TOKEN_TTL_S)) as cluster:
        a, b = cluster.target(0), cluster.target(1)
        async with (
            DirectoryConnection(a) as on_a,
            DirectoryConnection(b) as on_b,
            DirectoryConnection(a) as other_on_a,
        ):
            alice = await new_user(on_a, "alice")
            await other_on_a.login(alice, "alice")
            on_b.token = on_a.token  # one secret: A's token works on B
            assert (await on_b.lookup("alice")).account.handle == "alice"

            await on_a.logout()
            took = await until_refused(on_b, "alice", "B refuses the token logged out on A")
            print(f"logout on A -> refused on B after {took * 1000:.1f} ms")
            assert len(await revoked_keys(cluster)) == 1
            assert (await other_on_a.lookup("alice")).account.handle == "alice"

            # RevokeSessions on B (signed by the key, no token) ends A's other session.
            async with DirectoryConnection(b) as anonymous:
                await anonymous.revoke_sessions(alice, "alice")
            took = await until_refused(other_on_a, "alice", "A refuses after B's revocation")
            print(f"RevokeSessions on B -> refused on A after {took * 1000:.1f} ms")
            revoked_token = other_on_a.token

        # A node started afterwards (from its stored view, then etcd) refuses them too.
        cluster.kill(1)
        cluster.start(1)
        async with DirectoryConnection(b) as on_b:
            on_b.token = revoked_token
            assert await refused(on_b, "alice")
            await on_b.login(alice, "alice")  # a new session works
            assert (await on_b.lookup("alice")).account.handle == "alice"

        # Each entry lives as long as the tokens it covers, under its own lease.
        async def gone() -> bool:
            return await revoked_keys(cluster) == []

        await eventually(gone, TOKEN_TTL_S + 15, "the revocations' leases ended")
