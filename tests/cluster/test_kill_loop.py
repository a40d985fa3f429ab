"""Acceptance 1 and 5 of replication: a kill loop with a ledger, checked by the history checker.

Three nodes (RF 3, W 2) and etcd. Writers register, re-register (renew, with a new seq) and
unregister devices through whichever node answers, recording every attempt with its own seq
(an attempt that fails may still have landed: recorded "unknown"); readers look the same
handles up through the SDK (one replica, failing over between nodes, never going back in
seq) and at QUORUM. Meanwhile a random node is SIGKILLed and restarted, round after round.
At the end every replica is read (tombstones included) and the history is checked: no
acknowledged write lost, no acknowledged unregister resurrected, no QUORUM read older than a
write acknowledged before it began, no client reading a seq go backwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from client_sdk import Client, Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, now_ms
from supernode.transport import PEER_RECONNECT_OPTIONS
from tests.cluster import history as checks
from tests.cluster.harness import Cluster, running_cluster
from tests.cluster.test_cluster_routing import mirrored
from tests.cluster.test_replication import node_credential, versions
from tests.integration.records import device
from tests.integration.sdk_support import TEST_CONFIG, unique

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROUNDS = 10
USERS = 6
DEVICES = ("phone", "tablet")
TTL = 120  # no lease ends during the run: every acknowledged register must survive
DOWN_S = 1.0  # how long a killed node stays down, under load
QUICK_RECONNECT = PEER_RECONNECT_OPTIONS  # as an app would: back within a second of a restart


@dataclass
class User:
    handle: str
    identity: Identity
    connections: list[DirectoryConnection]
    seq: int = 0
    # Per device: the seq of its newest register if that attempt was acknowledged (None
    # when the newest attempt's fate is unknown, or after an unregister).
    settled: dict[str, int | None] = field(default_factory=dict)


class Load:
    """Writers and readers running until told to stop; every operation goes in the history."""

    def __init__(self, cluster: Cluster, users: list[User], history: checks.History) -> None:
        self.cluster, self.users, self.history = cluster, users, history
        self.rng = random.Random(7)
        self.stopping = asyncio.Event()

    def lease_end(self, expires_at_ms: int) -> float:
        """The granted lease end on the history's clock."""
        return time.monotonic() + (expires_at_ms - now_ms()) / 1000

    async def write(self, user: User) -> None:
        """One register (a new seq) or, when the device's newest register is known to have
        landed, an unregister: its tombstone then carries exactly that seq, which the
        history must know. Each attempt through another node is its own recorded write."""
        device_id = self.rng.choice(DEVICES)
        current = user.settled.get(device_id)
        unregister = current is not None and device_id == "tablet" and self.rng.random() < 0.3
        for connection in self.rng.sample(user.connections, len(user.connections)):
            if unregister:
                assert current is not None
                token = self.history.invoke_write(user.handle, device_id, current, "unregister")
            else:
                user.seq += 1
                token = self.history.invoke_write(user.handle, device_id, user.seq, "register")
            try:
                if unregister:
                    await connection.unregister_device(device_id, deadline=5)
                    self.history.complete(token, "ok")
                    user.settled[device_id] = None
                else:
                    record = device(user.identity, user.handle, device_id, user.seq, ttl=TTL)
                    granted = await connection.register_device(record, deadline=5)
                    end = self.lease_end(granted.expires_at_ms)
                    self.history.complete(token, "ok", expires_at=end)
                    user.settled[device_id] = user.seq
                return
            except grpc.aio.AioRpcError:
                self.history.complete(token, "unknown")  # it may have reached a replica
                if not unregister:
                    user.settled[device_id] = None

    async def writer(self, user: User) -> None:
        while not self.stopping.is_set():
            await self.write(user)
            await asyncio.sleep(self.rng.uniform(0.02, 0.1))

    async def reader(self, client: Client, handles: list[str], name: str) -> None:
        while not self.stopping.is_set():
            handle = self.rng.choice(handles)
            token = self.history.invoke_read(handle, "one", name)
            try:
                presence = await client.lookup(handle)
            except Exception:  # any failure is a failed lookup, counted
                self.history.complete_read(token, "failed")
            else:
                seen = {d.device_id: d.seq for d in presence.devices}
                self.history.complete_read(token, "ok", seen)
            await asyncio.sleep(0.01)

    async def quorum_reader(self, connections: list[DirectoryConnection]) -> None:
        while not self.stopping.is_set():
            user = self.rng.choice(self.users)
            token = self.history.invoke_read(user.handle, "quorum", "quorum-reader")
            for connection in self.rng.sample(connections, len(connections)):
                try:
                    answer = await connection.lookup(user.handle, deadline=5, quorum=True)
                except grpc.aio.AioRpcError:
                    continue
                seen = {}
                for served in answer.devices:
                    record = device_record_of(served)
                    seen[record.device_id] = record.seq
                self.history.complete_read(token, "ok", seen)
                break
            else:
                self.history.complete_read(token, "failed")
            await asyncio.sleep(0.02)


def device_record_of(served: pb.Device) -> pb.DeviceRecord:
    return pb.DeviceRecord.FromString(served.signed.record)


async def final_state(cluster: Cluster, users: list[User]) -> dict[checks.Key, checks.Observed]:
    """Every replica's versions merged by the merge rule, tombstones included."""
    credential = await node_credential(cluster)
    state: dict[checks.Key, checks.Observed] = {}
    for user in users:
        for target in cluster.targets:
            for device_id, seq, _expires, tombstone in await versions(
                target, user.handle, credential
            ):
                key = (user.handle, device_id)
                state[key] = max(state.get(key, (0, False)), (seq, tombstone))
    return state


async def test_ten_rounds_of_sigkill_lose_nothing_acknowledged(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        history = checks.History(time.monotonic)
        users: list[User] = []
        setup = DirectoryConnection(cluster.target(0))
        for n in range(USERS):
            identity, handle = Identity.generate(), unique(f"kill{n}")
            await setup.create_account(identity, handle)
            await setup.login(identity, handle)
            connections = [DirectoryConnection(t, options=QUICK_RECONNECT) for t in cluster.targets]
            for connection in connections:
                connection.token = setup.token
                await mirrored(connection, handle)
            users.append(User(handle, identity, connections))
        await setup.close()
        load = Load(cluster, users, history)
        readers = []
        for n in range(3):
            client = Client(cluster.targets, Identity.generate(), unique(f"reader{n}"),
                            config=TEST_CONFIG)  # fmt: skip
            await client.create_account()
            readers.append(client)
        quorum_connections = [DirectoryConnection(t) for t in cluster.targets]
        quorum_connections[0].token = users[0].connections[0].token
        for connection in quorum_connections[1:]:
            connection.token = quorum_connections[0].token
        handles = [u.handle for u in users]
        tasks = [asyncio.create_task(load.writer(u)) for u in users]
        tasks += [asyncio.create_task(load.reader(c, handles, f"reader{i}"))
                  for i, c in enumerate(readers)]  # fmt: skip
        tasks.append(asyncio.create_task(load.quorum_reader(quorum_connections)))
        rng = random.Random(11)
        try:
            for _round in range(ROUNDS):
                victim = rng.randrange(3)
                cluster.kill(victim)
                await asyncio.sleep(DOWN_S)
                await asyncio.to_thread(cluster.start, victim)
                await asyncio.sleep(0.5)
        finally:
            load.stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(3)  # hints replayed (every second), repairs done
        final = await final_state(cluster, users)
        read_at = time.monotonic()
        report = checks.summary(history)
        print(f"\nkill loop: {ROUNDS} rounds, {report}")
        violations = (
            checks.lost_writes(history, final, read_at=read_at, margin=1.0)
            + checks.resurrections(history, final)
            + checks.stale_quorum_reads(history, margin=1.0)
            + checks.non_monotonic_reads(history)
        )
        assert violations == [], "\n".join(violations[:20])
        assert report["register.ok"] > 50 and report.get("unregister.ok", 0) > 5
        sdk_reads = report.get("read.one.ok", 0) + report.get("read.one.failed", 0)
        sdk_success = report.get("read.one.ok", 0) / max(1, sdk_reads)
        print(f"SDK lookups (ONE, failing over): {sdk_success:.4%} of {int(sdk_reads)} succeeded")
        assert sdk_success >= 0.999, report  # the target, through SDK failover
        for client in readers:
            await client.close()
        for connection in quorum_connections + [c for u in users for c in u.connections]:
            await connection.close()
