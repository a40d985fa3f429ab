"""A reconnect storm on a real 3-node cluster (issue 15, acceptance 4).

Every SDK client of the test is logged in, has registered a device and holds a watch; then
all of them are closed and recreated at once (new ``Client`` objects: login, register,
watch again), as when every app of a region comes back after an outage. The nodes run with
load-shedding bounds low enough that the storm overflows them, so the refusal path (and the
SDK's honouring of the retry hint) is what the clients go through.

Checked: every node process is still alive and answering; every client is serving again
(registered, its device visible by lookup, its watch delivering a change) within
``STORM_DEADLINE_S``; etcd's writes during the storm are counted (header revision before and
after) and bounded by a figure of nodes and time, never of clients. The storm's figures are
printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client_sdk import Client, DeviceStatus, EventKind, Identity, Watch
from client_sdk.transport import DirectoryConnection
from supernode.cluster.etcd import EtcdClient, EtcdConfig
from tests.cluster.harness import Cluster, running_cluster
from tests.cluster.test_cluster_routing import mirrored
from tests.integration.metrics import samples
from tests.integration.process import _scrape
from tests.integration.sdk_support import TEST_CONFIG, unique
from tests.integration.waiting import eventually

CLIENTS = 300
NODES = 3
# Generous: the storm is ~900 calls through bounds of two at a time per class and node.
STORM_DEADLINE_S = 180.0
SETUP_CONCURRENCY = 10
# Low enough that a storm of CLIENTS overflows them; the hint spreads retries over 0.1-2 s.
SHEDDING = (
    "--overload-max-in-flight-login", "2",
    "--overload-max-in-flight-write", "2",
    "--overload-max-in-flight-stream-open", "2",
    "--overload-retry-after-min-ms", "100",
    "--overload-retry-after-max-ms", "2000",
)  # fmt: skip
# The client a test app would run: patient, and a restart leaves the lease to run out.
STORM_CONFIG = dataclasses.replace(TEST_CONFIG, max_attempts=60, unregister_on_close=False)
KEY = b"k" * 32
# The membership republishes a node's member key at most every 5 s (a newer mirror
# revision), and the controller writes placement only when members change.
MEMBER_PUBLISH_INTERVAL_S = 5.0


@dataclasses.dataclass
class User:
    handle: str
    identity: Identity
    targets: list[str]
    client: Client | None = None
    watch: Watch | None = None


async def serve(user: User) -> float:
    """Bring ``user`` up as an app does: register, watch itself, change status and see the
    change arrive on the watch, look itself up. Returns when it is serving (monotonic)."""
    client = Client(user.targets, user.identity, user.handle, config=STORM_CONFIG)
    user.client = client
    registration = await client.register_device("phone", transport_key=KEY, ttl=60)
    watch = client.watch([user.handle])
    user.watch = watch
    snapshot = await anext(watch)
    assert snapshot.kind is EventKind.SNAPSHOT
    await client.update_device("phone", status=DeviceStatus.AWAY)
    async for event in watch:  # bounded by the storm's deadline
        device = event.device
        if event.kind is EventKind.UPDATED and device and device.status is DeviceStatus.AWAY:
            break
    presence = await client.lookup(user.handle)
    (device,) = [d for d in presence.devices if d.device_id == "phone"]
    assert device.seq > registration.seq
    return time.monotonic()


async def close(user: User) -> None:
    if user.watch is not None:
        await user.watch.close()
    if user.client is not None:
        await user.client.close()
    user.client, user.watch = None, None


async def etcd_revision(cluster: Cluster) -> int:
    async with EtcdClient(EtcdConfig(tuple(cluster.etcd.client_endpoints))) as etcd:
        return (await etcd.get_prefix(b"/storm-test-revision-probe/")).revision


def shed_by_method(cluster: Cluster) -> Counter[str]:
    """Calls refused with a retry hint, by method, summed over the nodes."""
    shed: Counter[str] = Counter()
    for index in range(NODES):
        for (name, labels), value in samples(_scrape(cluster.node(index).metrics_url)).items():
            if name == "supernode_requests_shed_total":
                shed[dict(labels)["method"]] += int(value)
    return shed


async def accounts(cluster: Cluster, count: int) -> list[User]:
    """``count`` accounts known to every node's mirror; user i starts on node i mod 3."""
    targets = cluster.targets
    users = [
        User(unique(f"storm{n}"), Identity.generate(), targets[n % NODES :] + targets[: n % NODES])
        for n in range(count)
    ]
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def create(user: User) -> None:
        client = Client(user.targets, user.identity, user.handle, config=STORM_CONFIG)
        async with gate, client:
            await client.create_account()

    await asyncio.gather(*(create(u) for u in users))
    probes = [DirectoryConnection(t) for t in targets]
    try:
        for user in users:
            for probe in probes:
                await mirrored(probe, user.handle, within=30)
    finally:
        for probe in probes:
            await probe.close()
    return users


async def answering(cluster: Cluster) -> None:
    """Every node process is alive and its health check says SERVING."""
    for index in range(NODES):
        node = cluster.node(index)
        assert node.process is not None and node.process.poll() is None, f"node {index} died"
        async with grpc.aio.insecure_channel(cluster.target(index)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, index


async def test_a_reconnect_storm_is_shed_and_every_client_serves_again(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, NODES, *SHEDDING) as cluster:
        users = await accounts(cluster, CLIENTS)
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def first_time(user: User) -> float:
            async with gate:  # a calm start: clients come up a few at a time
                return await serve(user)

        await asyncio.gather(*(first_time(u) for u in users))
        shed_before = shed_by_method(cluster)

        # The storm: every client closed and recreated at once.
        revision_before = await etcd_revision(cluster)
        await asyncio.gather(*(close(u) for u in users))
        started = time.monotonic()
        async with asyncio.timeout(STORM_DEADLINE_S):
            served_at = await asyncio.gather(*(serve(u) for u in users))
        all_serving_s = max(served_at) - started
        revision_after = await etcd_revision(cluster)

        await answering(cluster)
        shed = shed_by_method(cluster) - shed_before
        etcd_writes = revision_after - revision_before
        print(
            f"\nreconnect storm: {CLIENTS} clients on {NODES} nodes; all serving after "
            f"{all_serving_s:.1f} s (median {sorted(served_at)[CLIENTS // 2] - started:.1f} s); "
            f"{shed.total()} calls shed with a retry hint ({dict(shed)}); "
            f"{etcd_writes} etcd writes"
        )
        assert shed.total() > 0, "the storm never reached the shedding bounds: nothing was tested"
        # Member keys republished (each node at most every 5 s) and nothing else: a figure
        # of nodes and time. One write per client would be CLIENTS or more.
        bound = NODES * (all_serving_s / MEMBER_PUBLISH_INTERVAL_S + 2)
        assert etcd_writes <= bound < CLIENTS, (etcd_writes, bound)

        async def all_still_registered() -> bool:
            probe = users[0].client
            assert probe is not None
            found = await probe.lookup_many([u.handle for u in users])
            return all(p is not None and len(p.devices) == 1 for p in found.values())

        await eventually(all_still_registered, 30, "every device visible after the storm")
        await asyncio.gather(*(close(u) for u in users))
