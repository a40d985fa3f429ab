"""Rebuilding the plane in flight: a 4th node joins a 3-node cluster under load, then one
node is decommissioned, and nothing acknowledged is lost (issue 15, acceptance 1).

The load is the kill loop's (SDK writers with a ledger, SDK readers at ONE, raw QUORUM
readers) plus an SDK watcher over every user's handle. Partitions move 8 at a time (of 64),
so each change of membership takes several rounds of streaming and flipping while the
load runs. Afterwards every handle's replicas (by the final placement) are read and the
history checked: no acknowledged write lost, no unregister resurrected, no stale QUORUM
read, no client reading a seq go backwards; SDK lookups succeeded at least 99.9 % of the
time; ownership is balanced; the watcher's view matches the replicas.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path

import pytest

from supernode.cluster.placement import Placement, fair_shares
from tests.cluster import history as checks
from tests.cluster.harness import PARTITIONS, Cluster, running_cluster
from tests.cluster.load import Load, User, Watcher, quorum_connections, readers, sdk_users
from tests.cluster.test_replication import node_credential, versions
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
USERS = 6
TTL = 120  # no lease ends during the run: every acknowledged register must survive
MOVING = "8"  # partitions in flight at once: a join of 64 partitions takes several rounds


async def replicas_state(
    cluster: Cluster, users: list[User], placement: Placement
) -> dict[checks.Key, checks.Observed]:
    """Each handle's versions on its replicas by ``placement``, merged by the merge rule
    (a decommissioned node's leftovers are not asked: only where reads go counts)."""
    credential = await node_credential(cluster)
    state: dict[checks.Key, checks.Observed] = {}
    for user in users:
        for target in placement.replicas_of_handle(user.handle):
            for device_id, seq, _expires, tombstone in await versions(
                target, user.handle, credential
            ):
                key = (user.handle, device_id)
                state[key] = max(state.get(key, (0, False)), (seq, tombstone))
    return state


def assert_balanced(placement: Placement) -> None:
    """Owners within one of Q/n, replicas within the planner's band (fair share +- 1)."""
    nodes = sorted(placement.nodes())
    shares = fair_shares(
        dict.fromkeys(nodes, ""), replication_factor=3, partitions=placement.partitions
    )
    for node in nodes:
        owned, held = len(placement.owned_by(node)), len(placement.partitions_of(node))
        share = placement.partitions / len(nodes)
        assert math.floor(share) <= owned <= math.ceil(share), (node, owned)
        assert math.floor(shares[node]) - 1 <= held <= math.ceil(shares[node]) + 1, (node, held)


async def supernode_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supernode.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_join_then_a_decommission_under_load_lose_nothing(tmp_path: Path) -> None:
    extra = ("--cluster-max-moving-partitions", MOVING)
    async with running_cluster(tmp_path, 4, *extra, started=3) as cluster:
        first = await cluster.placement()
        assert first is not None and first.nodes() == set(cluster.targets[:3])
        history = checks.History(time.monotonic)
        users = await sdk_users(cluster.targets[:3], USERS, history, "move")
        handles = [u.handle for u in users]
        load = Load(users, history, TTL)
        lookers = await readers(cluster.targets[:3], 3, "mover")
        quorum = await quorum_connections(cluster.targets[:3])
        (watching,) = await readers(cluster.targets[:3], 1, "watcher")
        watcher = Watcher(watching, handles)
        tasks = [asyncio.create_task(load.writer(u)) for u in users]
        tasks += [asyncio.create_task(load.reader(c, handles, f"reader{i}"))
                  for i, c in enumerate(lookers)]  # fmt: skip
        tasks.append(asyncio.create_task(load.quorum_reader(quorum)))
        watch_task = asyncio.create_task(watcher.run())
        try:

            async def running() -> bool:
                return checks.summary(history).get("register.ok", 0) >= 20

            await eventually(running, 60, "load running")
            joined_at = time.monotonic()
            await asyncio.to_thread(cluster.start, 3)
            joined = await cluster.wait_placed_on(set(cluster.targets), within=180)
            join_s = time.monotonic() - joined_at
            assert joined.epoch > first.epoch + 2  # it moved in several steps, not one
            assert_balanced(joined)

            leaver = cluster.target(0)
            left_at = time.monotonic()
            code, out, err = await supernode_cli(
                "decommission", leaver, "--etcd-endpoints", cluster.endpoints, "--wait"
            )
            leave_s = time.monotonic() - left_at
            assert code == 0, err
            assert f"{leaver}: left, holds 0 partitions" in out, out
            remaining = set(cluster.targets[1:])
            settled = await cluster.wait_placed_on(remaining, within=30)
            assert_balanced(settled)
        finally:
            await load.stop(tasks)
        await asyncio.sleep(3)  # hints replayed (every second), repairs done
        final = await replicas_state(cluster, users, settled)
        read_at = time.monotonic()
        report = checks.summary(history)
        print(f"\njoin {join_s:.1f} s, decommission {leave_s:.1f} s; {report}")
        violations = checks.violations(history, final, read_at=read_at)
        assert violations == [], "\n".join(violations[:20])
        assert report["register.ok"] > 50 and report.get("unregister.ok", 0) > 5
        sdk_success, sdk_reads = checks.one_read_success(report)
        print(f"SDK lookups (ONE): {sdk_success:.4%} of {sdk_reads} succeeded")
        assert sdk_success >= 0.999, report

        async def caught_up() -> bool:
            return not watcher.differences(final)

        await eventually(caught_up, 20, "the watcher caught up")
        print(f"watcher: {watcher.events} events, {watcher.gaps} gaps")
        watch_task.cancel()

        code, out, err = await supernode_cli(
            "status", "--etcd-endpoints", cluster.endpoints, "--json"
        )
        assert code == 0, err
        rows = {row["name"]: row for row in json.loads(out)["nodes"]}
        assert rows[leaver]["membership"] == "left" and rows[leaver]["partitions_held"] == 0
        assert json.loads(out)["placement"]["moving"] == 0
        assert sum(row["partitions_held"] for row in rows.values()) == 3 * PARTITIONS
        for client in [*lookers, watching]:
            await client.close()
        for connection in quorum:
            await connection.close()
