"""Step 1 of the cluster: any node serves any user (acceptance 1, 2, 5 and 7 of the issue).

Real etcd, three real supernode processes on loopback, SDK clients attached to different
nodes. Placement has one replica per partition here; a node that dies takes its partitions'
presence with it until it returns (step 2 replicates them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from client_sdk import (
    DeviceStatus,
    EventKind,
    Identity,
    OfflineReason,
    P2PSettings,
    PresenceEvent,
)
from client_sdk.protocol.refusals import Reason, error_reason
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as dpb
from client_sdk.transport import DirectoryConnection
from supernode.cluster.etcd import EtcdClient, EtcdConfig
from supernode.internal.v1 import cluster_pb2
from tests.cluster.harness import MEMBER_TTL, running_cluster
from tests.integration.metrics import sample
from tests.integration.p2p_support import (
    alice_and_bob,
    first_incoming,
    listening,
    p2p_client,
    until_listening,
)
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.sdk_support import TEST_CONFIG, Clients, Collector, unique, unused_target
from tests.integration.test_p2p_loopback import exchange, stun_of
from tests.integration.test_rendezvous_server import Peer, RelayStream, offer_and_answer
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
KEY = Identity.generate().public_key


def status_json(endpoints: str) -> dict[str, Any]:
    """``supernode status --json``, run as an operator would."""
    done = subprocess.run(
        [sys.executable, "-m", "supernode.cli", "status", "--etcd-endpoints", endpoints, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def mirrored(connection: DirectoryConnection, handle: str, within: float = 10.0) -> None:
    """Until ``handle``'s account reached this node's mirror."""

    async def found() -> bool:
        try:
            await connection.get_account(handle)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND, exc
            return False
        return True

    await eventually(found, within, f"account {handle} on {connection}")


async def test_any_node_serves_any_user(tmp_path: Path, sdk_clients: Clients) -> None:
    async with running_cluster(tmp_path) as cluster:
        a, b, c = cluster.targets
        bob = await sdk_clients.user(a, "bob")  # created through node A
        alice = await sdk_clients.user(c, "alice")  # attached to node C
        for target in (b, c):
            async with DirectoryConnection(target) as connection:
                await mirrored(connection, bob.handle)

        watch = Collector(alice.watch([bob.handle]))
        await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
        await bob.register_device("phone", transport_key=KEY)
        for target in (b, c):  # whoever owns bob's partition, every node finds the device
            viewer = await sdk_clients.user(target, "viewer")
            presence = await viewer.lookup(bob.handle)
            assert [d.device_id for d in presence.devices] == ["phone"]
        await watch.wait_for(lambda e: e.kind is EventKind.ONLINE and e.device_id == "phone")
        await bob.update_status("phone", DeviceStatus.AWAY)
        await watch.wait_for(lambda e: e.kind is EventKind.UPDATED)
        await bob.unregister_device("phone")
        offline = await watch.wait_for(lambda e: e.kind is EventKind.OFFLINE)
        assert offline.reason is OfflineReason.UNREGISTERED

        # Lease expiry on the owner reaches a watcher on another node.
        async with DirectoryConnection(a) as raw:
            await raw.login(bob.identity, bob.handle)
            record = device(bob.identity, bob.handle, "tablet", seq=1, ttl=1)
            await raw.register_device(record)
        await watch.wait_for(lambda e: e.kind is EventKind.ONLINE and e.device_id == "tablet")
        expired = await watch.wait_for(
            lambda e: e.kind is EventKind.OFFLINE and e.device_id == "tablet"
        )
        assert expired.reason is OfflineReason.EXPIRED

        # Search on B finds an account created on A.
        searcher = await sdk_clients.user(b, "searcher")

        async def found() -> bool:
            return bob.handle in [r.handle for r in await searcher.search(bob.handle)]

        await eventually(found, 10, "bob in search on node B")
        await watch.close()


async def test_each_handle_is_won_by_exactly_one_creator(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2) as cluster:
        a, b = (DirectoryConnection(t) for t in cluster.targets)
        try:
            for race in range(100):
                handle = unique(f"race{race}")
                outcomes = await asyncio.gather(
                    a.create_account(Identity.generate(), handle),
                    b.create_account(Identity.generate(), handle),
                    return_exceptions=True,
                )
                won = [o for o in outcomes if not isinstance(o, BaseException)]
                lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
                assert len(won) == 1 and len(lost) == 1, outcomes
                assert lost[0].code() is grpc.StatusCode.ALREADY_EXISTS
                assert "taken" in (lost[0].details() or "")
                assert error_reason(lost[0].trailing_metadata()) == Reason.HANDLE_TAKEN
        finally:
            await a.close()
            await b.close()


async def test_a_token_issued_by_one_node_works_on_every_node(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2) as cluster:
        a_target, b_target = cluster.targets
        identity = Identity.generate()
        handle = unique("carol")
        async with DirectoryConnection(a_target) as on_a, DirectoryConnection(b_target) as on_b:
            await on_a.create_account(identity, handle)
            await on_a.login(identity, handle)
            await mirrored(on_b, handle)
            on_b.token = on_a.token  # the token node A issued, presented to node B
            lookup = await on_b.lookup(handle)
            assert lookup.account.handle == handle
            # The creation signature went through etcd with the account: B serves it.
            body = lookup.account.SerializeToString()
            assert signature_is_valid(
                identity.public_key, CREATE_ACCOUNT_DOMAIN, body, lookup.account_signature
            )
            record = await on_b.get_account_record(handle)
            assert record.account_signature == lookup.account_signature


async def test_a_killed_node_expires_its_replicas_serve_and_hints_catch_it_up(
    tmp_path: Path,
) -> None:
    """RF 3 on 3 nodes: every node holds every partition. A killed node's member key
    expires within its TTL, status shows it down, placement does not move (grace); its
    partitions go on being served, writes are acknowledged by the two others, and the
    hint kept for it is replayed when it returns."""
    async with running_cluster(tmp_path) as cluster:
        placement = await cluster.wait_placed_on_all()
        victim = cluster.target(1)
        handle = cluster.handle_owned_by(placement, 1, "dora")
        identity = Identity.generate()
        async with DirectoryConnection(cluster.target(0)) as on_a:
            await on_a.create_account(identity, handle)
            await on_a.login(identity, handle)
            started = time.monotonic()
            cluster.kill(1)

            async with EtcdClient(EtcdConfig(tuple(cluster.etcd.client_endpoints))) as etcd:

                async def gone() -> bool:
                    return await etcd.get(cluster.keys.member(victim)) is None

                await eventually(gone, MEMBER_TTL + 5, "the killed node's member key expired")
            assert time.monotonic() - started < MEMBER_TTL + 5
            after = await cluster.placement()
            assert after is not None and after.epoch == placement.epoch  # grace: not moved
            report = status_json(cluster.endpoints)
            states = {node["name"]: node["state"] for node in report["nodes"]}
            assert states == {cluster.target(0): "up", victim: "down", cluster.target(2): "up"}
            victim_row = next(n for n in report["nodes"] if n["name"] == victim)
            assert victim_row["partitions_owned"] == len(placement.owned_by(victim)) > 0

            await on_a.register_device(device(identity, handle, "phone"))
            assert [d.signed for d in (await on_a.lookup(handle)).devices]
            hints = "supernode_cluster_hints_pending"
            assert sample(cluster.node(0).metrics(), hints) == 1

            cluster.start(1)  # same address and data directory

            async def replayed() -> bool:
                return sample(cluster.node(0).metrics(), hints) == 0

            await eventually(replayed, 30, "the hint replayed to the returning node")
        async with DirectoryConnection(victim) as on_victim:
            await on_victim.login(identity, handle)
            assert len((await on_victim.lookup(handle)).devices) == 1  # its own replica


async def test_with_one_replica_a_dead_nodes_partitions_are_unavailable(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2, "--cluster-replication-factor", "1") as cluster:
        placement = await cluster.wait_placed_on_all()
        victim = cluster.target(1)
        handle = cluster.handle_owned_by(placement, 1, "gus")
        identity = Identity.generate()
        async with DirectoryConnection(cluster.target(0)) as on_a:
            await on_a.create_account(identity, handle)
            await on_a.login(identity, handle)
            cluster.kill(1)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await on_a.lookup(handle)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert victim in (refused.value.details() or "")
            cluster.start(1)

            async def served() -> bool:
                try:
                    return (await on_a.lookup(handle)).account.handle == handle
                except grpc.aio.AioRpcError:
                    return False

            await eventually(served, 30, "the restarted node serves its partitions")


async def test_clients_on_different_nodes_connect_peer_to_peer(tmp_path: Path) -> None:
    """The offer is admitted by the caller's node and delivered by the callee's."""
    async with running_cluster(tmp_path, 2) as cluster:
        a, b = cluster.nodes[0], cluster.nodes[1]
        assert a is not None and b is not None
        settings = P2PSettings(stun_server=stun_of(a), direct=True)
        async with alice_and_bob(a.grpc_target, settings, b.grpc_target) as (alice, bob):
            async with DirectoryConnection(a.grpc_target) as on_a:
                await mirrored(on_a, "bob")
            accepting = await listening(bob)
            async with asyncio.timeout(30):
                caller = await alice.connect("bob")
            async with asyncio.timeout(30):
                callee = await accepting
            assert caller.peer.handle == "bob" and callee.peer.handle == "alice"
            assert caller.path == callee.path == "direct"
            await exchange(caller, callee, b"across-nodes ")
            await caller.close()
        forwarded = sample(
            a.metrics(), "supernode_cluster_forwarded_calls_total", method="DeliverOffer"
        )
        assert forwarded >= 1  # node A handed the offer to node B


async def test_a_relay_ticket_issued_on_one_node_joins_on_another(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 2) as cluster:
        a_target, b_target = cluster.targets
        async with DirectoryConnection(a_target) as on_a1, DirectoryConnection(a_target) as on_a2:
            alice = await Peer.create(on_a1, "alice")
            bob = await Peer.create(on_a2, "bob")
            listening_call = bob.listen()
            assert (await listening_call.read()).HasField("ready")
            async with asyncio.timeout(30):
                answered = await offer_and_answer(alice, bob, listening_call)
            ticket = answered.relay_ticket
            listening_call.cancel()
            async with (
                DirectoryConnection(b_target) as on_b1,
                DirectoryConnection(b_target) as on_b2,
            ):
                on_b1.token, on_b2.token = on_a1.token, on_a2.token
                sides = [
                    RelayStream(Peer(on_b1, "alice"), ticket),
                    RelayStream(Peer(on_b2, "bob"), ticket),
                ]
                for side in sides:
                    assert (await side.read()).HasField("ready")
                sides[0].send(b"ciphertext")
                assert (await sides[1].read()).datagram == b"ciphertext"
                for side in sides:
                    side.call.cancel()


async def test_the_internal_service_refuses_clients(tmp_path: Path) -> None:
    """ClusterService is on the public port but takes only node credentials: a client (even
    logged in) can neither write presence past admission nor read through it."""
    async with running_cluster(tmp_path, 1) as cluster:
        target = cluster.target(0)
        identity = Identity.generate()
        handle = unique("mallory")
        write = cluster_pb2.ApplyRequest(
            write=cluster_pb2.DeviceWrite(
                handle=handle, device_id="d", seq=1, expires_at_ms=2**62, device=b"forged"
            ),
            epoch=1,
            fresh=True,
        ).SerializeToString()
        async with DirectoryConnection(target) as connection:
            await connection.create_account(identity, handle)
            apply = connection.channel.unary_unary("/supernode.internal.v1.ClusterService/Apply")
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await apply(write)
            assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(anonymous.value.trailing_metadata()) == Reason.TOKEN_MISSING
            await connection.login(identity, handle)
            with pytest.raises(grpc.aio.AioRpcError) as client:
                await apply(write, metadata=connection.metadata)
            assert client.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "only nodes" in (client.value.details() or "")
            assert error_reason(client.value.trailing_metadata()) == Reason.TOKEN_AUDIENCE
            assert (await connection.lookup(handle)).devices == []


def test_a_node_that_cannot_reach_etcd_and_never_joined_refuses_to_start(
    tmp_path: Path,
) -> None:
    node = SupernodeProcess(
        tmp_path / "lonely",
        "--cluster-etcd-endpoints",
        unused_target(),
        "--cluster-etcd-timeout-seconds",
        "1",
    )
    with pytest.raises(RuntimeError, match="never been a member"):
        node.start(timeout=30)


def test_a_cluster_member_runs_as_one_process_for_now(tmp_path: Path) -> None:
    node = SupernodeProcess(
        tmp_path / "workers", "--workers", "2", "--cluster-etcd-endpoints", unused_target()
    )
    with pytest.raises(RuntimeError, match="one process"):
        node.start(timeout=30)


async def test_after_the_grace_period_the_controller_moves_a_dead_nodes_partitions(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path, 3, "--cluster-down-grace-seconds", "2") as cluster:
        placement = await cluster.wait_placed_on_all()
        handle = cluster.handle_owned_by(placement, 2, "erin")
        identity = Identity.generate()
        async with DirectoryConnection(cluster.target(0)) as on_a:
            await on_a.create_account(identity, handle)
            await on_a.login(identity, handle)
            cluster.kill(2)
            survivors = {cluster.target(0), cluster.target(1)}

            async def moved() -> bool:
                current = await cluster.placement()
                return current is not None and current.nodes() == survivors

            await eventually(moved, MEMBER_TTL + 20, "partitions moved off the dead node")
            moved_to = await cluster.placement()
            assert moved_to is not None and moved_to.epoch > placement.epoch

            async def served() -> bool:
                try:
                    await on_a.lookup(handle)  # the account, on its new owner (no devices:
                except grpc.aio.AioRpcError:  # one replica per partition in this step)
                    return False
                return True

            await eventually(served, 15, "the moved handle is served again")


@pytest.mark.parametrize("ring_aware", [False, True], ids=["plain", "ring-aware"])
async def test_an_sdk_client_fails_over_between_nodes_and_keeps_renewing(
    tmp_path: Path, sdk_clients: Clients, ring_aware: bool
) -> None:
    """The issue's first report: Client([A, B]) lost its account when A stopped. Now B
    serves it (plain: the next target given) or a replica the ring names (ring-aware: the
    handle's owner here is C, which the client learnt from the placement)."""
    async with running_cluster(tmp_path) as cluster:
        placement = await cluster.wait_placed_on_all()
        handle = cluster.handle_owned_by(placement, 2, "frank")
        config = dataclasses.replace(TEST_CONFIG, ring_aware=ring_aware)
        client = sdk_clients.open([cluster.target(0), cluster.target(1)], handle, config=config)
        await client.create_account("Frank")
        first = await client.register_device("laptop", transport_key=KEY, ttl=2)
        assert client.current_target == cluster.target(0)
        async with DirectoryConnection(cluster.target(1)) as on_b:
            await mirrored(on_b, handle)
        cluster.kill(0)

        async def renewed_elsewhere() -> bool:
            current = client.registration("laptop")
            return current is not None and current.expires_at_ms > first.expires_at_ms + 1500

        await eventually(renewed_elsewhere, 20, "a renewal through another node")
        if ring_aware:  # renewals went to a live replica; the plain target may be stale
            assert client.routing.ring_epoch > 0 and client.routing.to_replica > 0
        else:
            assert client.current_target == cluster.target(1)
        presence = await client.lookup(handle)
        assert [d.device_id for d in presence.devices] == ["laptop"]


async def test_a_quorum_read_sees_acknowledged_writes_and_repairs_a_lagging_replica(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path) as cluster:
        identity, handle = Identity.generate(), unique("hana")
        a, b, c = cluster.targets
        async with DirectoryConnection(a) as on_a:
            await on_a.create_account(identity, handle)
            await on_a.login(identity, handle)
            for target in (b, c):
                async with DirectoryConnection(target) as connection:
                    await mirrored(connection, handle)
            cluster.kill(2)  # C misses the write; A keeps a hint for it ...
            await on_a.register_device(device(identity, handle, "phone"))
        cluster.kill(0)  # ... and dies with it: only B holds the write now
        cluster.start(2)
        async with DirectoryConnection(c) as on_c:
            await on_c.login(identity, handle)
            assert (await on_c.lookup(handle)).devices == []  # ONE: C's own, lagging copy
            quorum = await on_c.lookup(handle, quorum=True)  # C and B: the newest wins
            assert [d.signed for d in quorum.devices] == [device_of(quorum)]

            async def repaired() -> bool:
                return len((await on_c.lookup(handle)).devices) == 1

            await eventually(repaired, 10, "C repaired by the quorum read")
            assert sample(cluster.node(2).metrics(), "supernode_cluster_read_repairs_total") >= 1
            cluster.kill(1)  # now one replica of three: no majority to read
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await on_c.lookup(handle, quorum=True)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert len((await on_c.lookup(handle)).devices) == 1  # ONE still answers


def device_of(response: dpb.LookupResponse) -> dpb.SignedDeviceRecord:
    return response.devices[0].signed


async def test_a_device_whose_node_died_is_reachable_on_the_node_it_moved_to(
    tmp_path: Path,
) -> None:
    """Bob's record still names node B (it was renewed there) when B dies; his SDK listens
    on C now, and Alice's offer finds him there."""
    async with running_cluster(tmp_path) as cluster:
        a, b, c = (cluster.node(i) for i in range(3))
        settings = P2PSettings(stun_server=stun_of(a), direct=True)
        alice = await p2p_client(a.grpc_target, "alice", settings)
        bob = await p2p_client([b.grpc_target, c.grpc_target], "bob", settings)
        try:
            for node in (a, c):
                async with DirectoryConnection(node.grpc_target) as connection:
                    await mirrored(connection, "bob")
            accepting = asyncio.create_task(first_incoming(bob))
            await until_listening(bob, accepting)
            cluster.kill(1)

            async def moved() -> bool:
                return bob.current_target == c.grpc_target

            await eventually(moved, 20, "bob's client moved to node C")
            await until_listening(bob, accepting)
            async with asyncio.timeout(30):
                caller = await alice.connect("bob")
            async with asyncio.timeout(30):
                callee = await accepting
            assert caller.peer.handle == "bob" and callee.peer.handle == "alice"
            await caller.close()
        finally:
            await alice.close()
            await bob.close()


async def test_watchers_on_every_node_see_each_change_once_across_a_node_kill(
    tmp_path: Path, sdk_clients: Clients
) -> None:
    """A watcher attached to each node (the one on the killed node fails over and resumes
    or reports the gap with a fresh snapshot): each sees every change once, in seq order."""
    async with running_cluster(tmp_path) as cluster:
        a, b, c = cluster.targets
        bob = await sdk_clients.user(b, "bob")
        for target in (a, c):
            async with DirectoryConnection(target) as connection:
                await mirrored(connection, bob.handle)
        watches = []
        for first, then in ((a, c), (b, a), (c, a)):
            watcher = await sdk_clients.user([first, then], "watcher")
            watches.append(Collector(watcher.watch([bob.handle])))
        for watch in watches:
            await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
        await bob.register_device("phone", transport_key=KEY)
        for watch in watches:
            await watch.wait_for(lambda e: e.kind is EventKind.ONLINE)
        cluster.kill(0)  # the first watcher's node
        await bob.update_status("phone", DeviceStatus.BUSY)
        await bob.update_status("phone", DeviceStatus.AWAY)

        def away_seen(event: PresenceEvent) -> bool:
            changes = list(event.gap_changes) if event.after_gap else [event]
            return any(
                ch.device is not None and ch.device.status is DeviceStatus.AWAY for ch in changes
            )

        for watch in watches:
            await watch.wait_for(away_seen, 30)
            seen: list[tuple[str, int]] = []
            for event in watch.events:
                for change in list(event.gap_changes) if event.after_gap else [event]:
                    if change.device is not None:
                        seen.append((change.device_id, change.device.seq))
            assert seen == sorted(set(seen)), seen  # once each, in seq order
            assert len(seen) >= 2
            await watch.close()


def malformed_handles_owned_by(placement: Any, owner: str) -> list[str]:
    """Malformed handles of every shape whose partition ``owner`` holds (so a lookup through
    another node would be forwarded if the handle were not checked first)."""
    shapes = ("Upper{n}", "has space{n}", "x" * 40 + "{n}", "bad!{n}", "{n}\u00e9t\u00e9")
    found = []
    for shape in shapes:
        for n in range(10_000):
            handle = shape.format(n=n)
            if placement.owner_of_handle(handle) == owner:
                found.append(handle)
                break
    assert len(found) == len(shapes)
    return found


async def test_a_malformed_handle_is_refused_as_invalid_on_any_node_never_forwarded(
    tmp_path: Path,
) -> None:
    """Through a node that does not own the handle's partition, a malformed handle gets the
    same INVALID_ARGUMENT as on its owner (not UNAVAILABLE from a forwarded call), with
    consistency ONE or QUORUM, alone or in a LookupMany, and nothing is forwarded; a
    LookupMany answers a repeated handle once."""
    async with running_cluster(tmp_path, 2, "--cluster-replication-factor", "1") as cluster:
        placement = await cluster.wait_placed_on_all()
        bad = malformed_handles_owned_by(placement, cluster.target(1))
        identity, handle = Identity.generate(), unique("vera")
        forwarded = "supernode_cluster_forwarded_calls_total"
        async with DirectoryConnection(cluster.target(0)) as on_a:
            await on_a.create_account(identity, handle)
            await on_a.login(identity, handle)
            before = sample(cluster.node(0).metrics(), forwarded, method="Lookup")
            for malformed in bad:
                for quorum in (False, True):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await on_a.lookup(malformed, quorum=quorum)
                    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, malformed
                    assert "is not a handle" in (refused.value.details() or ""), malformed
                    with pytest.raises(grpc.aio.AioRpcError) as many:
                        await on_a.lookup_many([malformed], quorum=quorum)
                    assert many.value.code() is grpc.StatusCode.INVALID_ARGUMENT, malformed
            assert sample(cluster.node(0).metrics(), forwarded, method="Lookup") == before
            # Through the cluster too, a repeated handle is answered once and an error names
            # where the malformed handle was first asked.
            for quorum in (False, True):
                many = await on_a.lookup_many([handle] * 999, quorum=quorum)
                assert [r.account.handle for r in many.results] == [handle]
                with pytest.raises(grpc.aio.AioRpcError) as named:
                    await on_a.lookup_many([handle, handle, bad[0], bad[0]], quorum=quorum)
                assert (named.value.details() or "").startswith("handles[2]:")
