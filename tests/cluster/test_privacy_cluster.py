"""Privacy settings and key rotations in a cluster with a real etcd.

Settings set through one node are enforced by every node (each mirrors the account's state
from etcd into its store, and presence reads are answered from there), within the mirror's
lag; two concurrent rotations of one account through different nodes: exactly one wins
(compare-and-swap on the state's revision in etcd), and every node serves its chain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import rendezvous_pb2 as rpb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rrpc
from client_sdk.transport import DirectoryConnection, sign_rotation
from tests.cluster.harness import running_cluster
from tests.integration.privacy_support import CONTACTS, device_ids, set_privacy
from tests.integration.records import device
from tests.integration.waiting import eventually

# How long a change may take to reach every node: the etcd watch's delivery (milliseconds
# on loopback); the test reports what it measured.
MIRROR_BOUND_S = 10.0


async def test_settings_set_on_one_node_hold_on_every_node(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2) as cluster:
        a, b = (DirectoryConnection(t) for t in cluster.targets)
        b_bob, b_carol = (
            DirectoryConnection(cluster.target(1)),
            DirectoryConnection(cluster.target(1)),
        )
        try:
            alice = Identity.generate()
            await a.create_account(alice, "alice", "Alice")
            await a.login(alice, "alice")
            for conn, handle in ((b_bob, "bob"), (b_carol, "carol")):
                identity = Identity.generate()
                await conn.create_account(identity, handle, handle.title())
                await conn.login(identity, handle)  # created through this node: known here
                await conn.register_device(device(identity, handle, "dev", seq=1, ttl=600))
            await a.register_device(device(alice, "alice", "dev", seq=1, ttl=600))

            async def carol_sees() -> list[str]:
                return device_ids(await b_carol.lookup("alice"))

            await eventually(lambda: _equals(carol_sees(), ["dev"]), what="alice visible")
            open_watch = b_carol.watch(["alice"])  # on node B, before the change
            first = (await open_watch.read()).snapshot
            assert device_ids(first.handles[0]) == ["dev"]
            started = time.monotonic()
            await set_privacy(a, alice, "alice", 1, CONTACTS, allowed=["bob"])
            await eventually(
                lambda: _equals(carol_sees(), []), MIRROR_BOUND_S, "alice hidden on node B"
            )
            lag = time.monotonic() - started
            print(f"privacy set on node A held on node B after {lag * 1000:.0f} ms")
            assert device_ids(await b_carol.lookup("alice", quorum=True)) == []
            many = await b_carol.lookup_many(["alice", "bob"])
            assert {r.account.handle: device_ids(r) for r in many.results} == {
                "alice": [],
                "bob": ["dev"],
            }
            assert device_ids(await b_bob.lookup("alice")) == ["dev"]
            snapshot = (await b_carol.watch(["alice"]).read()).snapshot
            assert device_ids(snapshot.handles[0]) == []
            # The watch open on node B ended when B's mirror applied the change.
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await open_watch.read()
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "privacy settings" in (ended.value.details() or "")
            rendezvous = rrpc.RendezvousServiceStub(b_carol.channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rendezvous.Connect(
                    rpb.ConnectRequest(handle="alice", device_id="dev", from_device_id="dev",
                                       payload=b"offer"),
                    metadata=b_carol.metadata,
                )  # fmt: skip
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not listening (offline)" in (caught.value.details() or "")

            # Two rotations from the same key, through different nodes at once: one wins.
            b_alice = DirectoryConnection(cluster.target(1))
            await eventually(lambda: _logs_in(b_alice, alice, "alice"))
            first, second = Identity.generate(), Identity.generate()
            outcomes = await asyncio.gather(
                a.rotate_key(sign_rotation(alice, first, "alice", 1)),
                b_alice.rotate_key(sign_rotation(alice, second, "alice", 1)),
                return_exceptions=True,
            )
            won = [o for o in outcomes if isinstance(o, list)]
            lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
            assert len(won) == 1 and len(lost) == 1, outcomes
            assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION, lost[0].details()
            chain = won[0]

            async def both_serve_chain() -> bool:
                records = [await c.get_account_record("alice") for c in (a, b_carol)]
                return all(list(r.rotations) == chain for r in records)

            await eventually(both_serve_chain, MIRROR_BOUND_S, "the chain on both nodes")
            await b_alice.close()
        finally:
            for conn in (a, b, b_bob, b_carol):
                await conn.close()


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _logs_in(conn: DirectoryConnection, identity: Identity, handle: str) -> bool:
    """The account may reach this node's mirror a moment after it was created elsewhere."""
    try:
        await conn.login(identity, handle)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True
