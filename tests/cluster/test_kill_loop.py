"""Acceptance 1 and 5 of replication: a kill loop with a ledger, checked by the history checker.

Three nodes (RF 3, W 2) and etcd. SDK clients register, re-register (a new seq, the renewal
path) and unregister devices, failing over between nodes; every attempt the SDK sends is
recorded with its own seq through its write observer (an attempt without an OK may still
have landed: recorded "unknown"). SDK readers look the same handles up (one replica,
failing over, never going back in seq), and raw connections read at QUORUM. Meanwhile a
random node is SIGKILLed and restarted, round after round. At the end every replica is read
(tombstones included) and the history is checked: no acknowledged write lost, no
acknowledged unregister resurrected, no QUORUM read older than a write acknowledged before
it began, no client reading a seq go backwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.cluster import history as checks
from tests.cluster.harness import Cluster, running_cluster
from tests.cluster.load import Load, User, quorum_connections, readers, sdk_users
from tests.cluster.test_replication import node_credential, versions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROUNDS = 10
USERS = 6
TTL = 120  # no lease ends during the run: every acknowledged register must survive
DOWN_S = 1.0  # how long a killed node stays down, under load


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
        users = await sdk_users(cluster.targets, USERS, history, "kill")
        load = Load(users, history, TTL)
        lookers = await readers(cluster.targets, 3, "reader")
        quorum = await quorum_connections(cluster.targets)
        handles = [u.handle for u in users]
        tasks = [asyncio.create_task(load.writer(u)) for u in users]
        tasks += [asyncio.create_task(load.reader(c, handles, f"reader{i}"))
                  for i, c in enumerate(lookers)]  # fmt: skip
        tasks.append(asyncio.create_task(load.quorum_reader(quorum)))
        rng = random.Random(11)
        try:
            for _round in range(ROUNDS):
                victim = rng.randrange(3)
                cluster.kill(victim)
                await asyncio.sleep(DOWN_S)
                await asyncio.to_thread(cluster.start, victim)
                await asyncio.sleep(0.5)
        finally:
            await load.stop(tasks)
        await asyncio.sleep(3)  # hints replayed (every second), repairs done
        final = await final_state(cluster, users)
        read_at = time.monotonic()
        report = checks.summary(history)
        print(f"\nkill loop: {ROUNDS} rounds, {report}")
        violations = checks.violations(history, final, read_at=read_at)
        assert violations == [], "\n".join(violations[:20])
        assert report["register.ok"] > 50 and report.get("unregister.ok", 0) > 5
        sdk_success, sdk_reads = checks.one_read_success(report)
        print(f"SDK lookups (ONE, failing over): {sdk_success:.4%} of {sdk_reads} succeeded")
        assert sdk_success >= 0.999, report  # the target, through SDK failover
        for client in lookers:
            await client.close()
        for connection in quorum:
            await connection.close()
