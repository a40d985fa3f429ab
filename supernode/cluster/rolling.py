"""A rolling restart (or upgrade): every node in turn, each once the cluster caught up.

The procedure (docs/operations.md, "Rolling restart and upgrade") is the same whoever
supervises the processes; ``supernode dev-cluster --rolling-restart`` runs it on a
development cluster and the cluster tests run it under load:

1. Wait until the cluster is whole: every node sees every node up, no node holds hints it
   has not replayed, no partition is moving, etcd is reachable. Restarting into a cluster
   that is still missing writes on a node would leave fewer copies of them.
2. Stop one node gracefully (SIGTERM: it revokes its member lease, so coordinators stop
   routing reads to it at once and keep hints of its writes).
3. Start it again (the same data directory and address; for an upgrade, the new build) and
   wait until it serves.
4. Go to 1 for the next node: step 1 now also waits for the hints of the restarted node
   to be replayed to it.

With RF 3 and W 2 one node down at a time never blocks a write or a lookup. The node's
liveness lease is not its ownership: no partition moves during the restart.

Pure decisions (:func:`health_from_metrics`, :func:`waiting_for`) plus one async loop over
:class:`Restartable` nodes, so the dev cluster and the tests share the procedure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

_POLL_S = 0.2


@dataclass(frozen=True)
class NodeHealth:
    """What one node's /metrics says about the cluster, as a rolling restart needs it."""

    name: str
    nodes_up: int
    nodes_down: int
    hints_pending: int
    partitions_moving: int
    etcd_reachable: bool


def health_from_metrics(name: str, text: str) -> NodeHealth:
    """Read the cluster gauges from a node's Prometheus text (absent ones count as 0)."""
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, sample.labels.get("state", ""))] = sample.value
    return NodeHealth(
        name=name,
        nodes_up=int(values.get(("supernode_cluster_nodes", "up"), 0)),
        nodes_down=int(values.get(("supernode_cluster_nodes", "down"), 0)),
        hints_pending=int(values.get(("supernode_cluster_hints_pending", ""), 0)),
        partitions_moving=int(values.get(("supernode_cluster_partitions_moving", ""), 0)),
        etcd_reachable=values.get(("supernode_cluster_etcd_reachable", ""), 0) == 1,
    )


def waiting_for(health: Sequence[NodeHealth], nodes: int) -> str | None:
    """None when the cluster is whole (step 1); else what it is still waiting for."""
    if len(health) < nodes:
        return f"{nodes - len(health)} nodes do not answer on /metrics"
    for node in health:
        if not node.etcd_reachable:
            return f"{node.name}: etcd unreachable"
        if node.nodes_up < nodes or node.nodes_down:
            return f"{node.name} sees {node.nodes_up} of {nodes} nodes up"
        if node.hints_pending:
            return f"{node.name} holds {node.hints_pending} hints not yet replayed"
        if node.partitions_moving:
            return f"{node.name} sees {node.partitions_moving} partitions moving"
    return None


class Restartable(Protocol):
    """One node as the supervisor knows it."""

    @property
    def name(self) -> str: ...

    async def stop(self) -> None:
        """Stop gracefully (SIGTERM) and wait for the process to exit."""

    async def start(self) -> None:
        """Start again and return once it serves."""

    async def metrics(self) -> str:
        """Its /metrics text; raises ``OSError`` while it does not answer."""


class RollingRestartError(Exception):
    """The cluster did not become whole in time; the message says what it waited for."""


@dataclass(frozen=True)
class Restarted:
    name: str
    down_s: float  # from the stop to serving again
    caught_up_s: float  # from serving again to the cluster whole


async def wait_whole(nodes: Sequence[Restartable], timeout_s: float) -> None:
    """Step 1: poll every node's /metrics until the cluster is whole, or raise."""
    reason: str | None = "nothing read yet"
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                health = []
                for node in nodes:
                    try:
                        health.append(health_from_metrics(node.name, await node.metrics()))
                    except OSError:
                        continue
                reason = waiting_for(health, len(nodes))
                if reason is None:
                    return
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        raise RollingRestartError(
            f"the cluster was not whole within {timeout_s:g} s: {reason}"
        ) from None


async def rolling_restart(
    nodes: Sequence[Restartable],
    *,
    settle_timeout_s: float = 120.0,
    report: Callable[[Restarted], None] = lambda restarted: None,
) -> list[Restarted]:
    """Restart every node in order (steps 1-4); the time each took."""
    done = []
    await wait_whole(nodes, settle_timeout_s)
    for node in nodes:
        stopped_at = time.monotonic()
        await node.stop()
        await node.start()
        serving_at = time.monotonic()
        await wait_whole(nodes, settle_timeout_s)
        restarted = Restarted(node.name, serving_at - stopped_at, time.monotonic() - serving_at)
        report(restarted)
        done.append(restarted)
    return done
