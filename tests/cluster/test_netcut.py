"""The network-cut harness itself: real supernode processes, real etcd, real iptables.

Each cut is proved twice: at the socket level, from probe processes that carry a node's
network identity (a connection attempt, and a connection established before the cut), and
through the cluster (a lookup node 0 forwards to the owner, node 2, with one replica).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client_sdk import Identity
from client_sdk.transport import DirectoryConnection
from tests.cluster.netcut import (
    PREFIX,
    CutMode,
    NetCut,
    StaleChain,
    comment,
    cuttable_cluster,
    install_script,
    node_gid,
    parse_tcp_table,
    stale_chains,
    sweep_stale_chains,
)
from tests.cluster.test_cluster_routing import mirrored
from tests.integration.metrics import sample
from tests.integration.records import device
from tests.integration.sdk_support import unique
from tests.integration.waiting import eventually
from tests.nat.requirements import ensure_tools, tool

FORWARDED = "supernode_cluster_forwarded_calls_total"
COORDINATION = "supernode.cluster.etcd"  # the health service of a node's link to etcd
# What a connection attempt into a cut meets: silence, or a reset at once.
BLOCKED: dict[CutMode, str] = {"drop": "timeout", "reset": "refused"}


# pure parts ----------------------------------------------------------------------------------


def test_node_identities_are_distinct_valid_group_ids() -> None:
    gids = {node_gid(pid, slot, index) for pid in (1, 4_194_303) for slot in range(4)
            for index in range(64)}  # fmt: skip
    assert len(gids) == 2 * 4 * 64
    assert all(0 < gid < 2**31 for gid in gids)
    with pytest.raises(ValueError):
        node_gid(1, 0, 64)


def test_only_chains_of_dead_and_old_runs_are_stale() -> None:
    rules = "\n".join(
        f'-A OUTPUT -m comment --comment "{comment(pid, 7, created)}" -j sncut-{pid}-0'
        for pid, created in ((10, 0), (11, 0), (12, 9_990))
    )
    alive = {11}
    found = stale_chains("filter", "-P OUTPUT ACCEPT\n" + rules, 10_000, lambda p, s: p in alive)
    assert found == [StaleChain("filter", "sncut-10-0", comment(10, 7, 0))]


def test_the_tcp_table_yields_established_ports_and_inodes() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
        "       0 1111 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:D2F0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0 "
        "       0 2222 1 0000000000000000 20 4 30 10 -1\n"
        "   2: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:D2F1 01 "
        "00000021:00000000 00:00000000 00000000     0        0 3333 1 0 20 4 30 10 -1\n"
    )
    assert [(s.local_port, s.remote_port, s.inode, s.unacked) for s in parse_tcp_table(table)] == [
        (0xD2F0, 0x1F90, 2222, 0),
        (0x1F91, 0xD2F1, 3333, 0x21),
    ]


# real cuts -----------------------------------------------------------------------------------


def forwarded_lookups(net: NetCut, index: int) -> float:
    return sample(net.cluster.node(index).metrics(), FORWARDED, method="Lookup")


async def coordination(target: str) -> str:
    """What ``target`` says, asked by the test process, of its link to etcd."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=COORDINATION))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["drop", "reset"])
async def test_a_cut_node_loses_its_peers_but_keeps_clients_and_etcd(
    tmp_path: Path, mode: CutMode
) -> None:
    async with cuttable_cluster(tmp_path, 3, "--cluster-replication-factor", "1", mode=mode) as net:
        cluster = net.cluster
        placement = await cluster.wait_placed_on_all()
        handle = cluster.handle_owned_by(placement, 2, "cut")
        identity = Identity.generate()
        etcd = cluster.etcd.client_endpoints[0]
        probe0, probe2 = await net.probe(0), await net.probe(2)
        async with (
            DirectoryConnection(cluster.target(0)) as on_0,
            DirectoryConnection(cluster.target(2)) as on_2,
        ):
            await on_0.create_account(identity, handle)
            await mirrored(on_2, handle)
            for connection in (on_0, on_2):
                await connection.login(identity, handle)
            await on_2.register_device(device(identity, handle, "phone", ttl=300))
            assert len((await on_0.lookup(handle)).devices) == 1  # node 0 asks node 2
            # A stream node 2 pushes on, established before the cut (like a node's Feed).
            await probe0.open_stream(cluster.target(2), COORDINATION)
            assert await probe0.connect(cluster.target(2), 10) == "connected"

            async def quiet() -> bool:
                return net.quiet(0, 2)

            # Nothing in flight: node 2's next push is the first byte the cut must hold.
            await eventually(quiet, 10, "no unacknowledged byte between nodes 0 and 2")
            net.cut(2)

            # Node 0's identity cannot open a connection to node 2, nor node 2's one to
            # node 0: both directions.
            assert await probe0.connect(cluster.target(2)) == BLOCKED[mode]
            assert await probe2.connect(cluster.target(0)) == BLOCKED[mode]
            # The test process still reaches node 2, and node 2 still reaches etcd: an
            # account created meanwhile reaches its mirror through its etcd watch.
            assert len((await on_2.lookup(handle)).devices) == 1
            assert await probe2.connect(etcd, 10) == "connected"
            later = unique("during-cut")
            await on_0.create_account(Identity.generate(), later)
            await mirrored(on_2, later)
            assert sample(cluster.node(2).metrics(), "supernode_cluster_etcd_reachable") == 1
            # Through the cluster: node 0 forwards the lookup to node 2 and cannot reach it.
            before = forwarded_lookups(net, 0)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await on_0.lookup(handle, deadline=30)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert cluster.target(2) in (refused.value.details() or "")
            assert forwarded_lookups(net, 0) == before + 1
            # The connection established before the cut: untouched so far by this test.
            if mode == "drop":
                # It stalls both ways. Node 2 loses etcd too (a second cut) and tells its
                # watchers, but the probe's stream does not hear of it ...
                net.cut_etcd(2, mode="reset")

                async def degraded() -> bool:
                    return await coordination(cluster.target(2)) == "NOT_SERVING"

                await eventually(degraded, 20, "node 2 reports etcd unreachable")
                assert await probe0.statuses() == ["SERVING"]
                # ... and a call from the probe gets no answer: a stall, not an error.
                assert await probe0.check(1.0) == "DEADLINE_EXCEEDED"
            else:
                assert await probe0.stream_end(within=10) == "UNAVAILABLE"  # reset at once

            net.heal(2)

            assert await probe0.connect(cluster.target(2), 10) == "connected"
            assert await probe2.connect(cluster.target(0), 10) == "connected"
            if mode == "drop":
                # The stalled connection resumes (at TCP's next retransmission): the stream
                # opened before the cut delivers what was held, and more.
                async def caught_up() -> bool:
                    statuses = await probe0.statuses()
                    return "NOT_SERVING" in statuses and statuses[-1] == "SERVING"

                await eventually(caught_up, 30, "the held updates reach the probe")
                assert await probe0.stream_end(within=0) is None
                assert await probe0.check(10) == "OK"
            else:

                async def rechecked() -> bool:
                    return await probe0.check(5) == "OK"

                await eventually(rechecked, 30, "the probe's channel reconnects")

            async def forwarded_again() -> bool:
                try:
                    return len((await on_0.lookup(handle, deadline=10)).devices) == 1
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
                    return False

            await eventually(forwarded_again, 30, "node 0 forwards to node 2 again")


def test_the_chains_of_a_crashed_run_are_swept() -> None:
    ensure_tools()
    chain, owner = f"{PREFIX}-0-{os.getpid()}", comment(0, 1, 0)  # PID 0 never owns a run
    subprocess.run(
        [tool("iptables-restore"), "-w", "--noflush"],
        input=install_script(chain, owner, [node_gid(0, 0, 0)]),
        text=True,
        timeout=30,
        check=True,
    )
    assert chain in iptables_rules()
    swept = sweep_stale_chains()
    assert {(s.table, s.chain) for s in swept} >= {("mangle", chain), ("filter", chain)}
    assert chain not in iptables_rules()


def iptables_rules() -> str:
    return "".join(
        subprocess.run(
            [tool("iptables"), "-w", "-t", table, "-S"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        for table in ("mangle", "filter")
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_pair_cut_spares_third_parties_an_etcd_cut_is_optional_and_all_is_removed(
    tmp_path: Path,
) -> None:
    async with cuttable_cluster(tmp_path, 3, mode="reset") as net:
        cluster = net.cluster
        etcd = cluster.etcd.client_endpoints[0]
        probes = [await net.probe(index) for index in range(3)]
        assert net.chain in iptables_rules()

        net.cut_pair(0, 2)
        assert await probes[0].connect(cluster.target(2)) == "refused"
        assert await probes[2].connect(cluster.target(0)) == "refused"
        assert await probes[1].connect(cluster.target(2), 10) == "connected"
        assert await probes[2].connect(cluster.target(1), 10) == "connected"
        assert await probes[0].connect(cluster.target(1), 10) == "connected"

        net.cut(2, etcd=True, mode="drop")  # this one says otherwise than the default
        assert await probes[2].connect(etcd) == "timeout"
        assert await probes[2].connect(cluster.target(1)) == "timeout"
        assert await probes[0].connect(etcd, 10) == "connected"

        net.heal(2)
        for index in (0, 1):
            assert await probes[index].connect(cluster.target(2), 10) == "connected"
        assert await probes[2].connect(etcd, 10) == "connected"
        scripts = Path(net.python_of(0)).parent
    assert net.chain not in iptables_rules()
    assert not scripts.exists()
