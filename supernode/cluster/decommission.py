"""``supernode decommission NODE``: take a node out of a cluster without losing a write.

The command only marks the node "leaving" in ``/nodes/<node>`` (a compare-and-swap on that
key, so it never overwrites a concurrent change); the controller then plans without it and
moves its partitions away a few at a time, exactly as for a join, and marks it "left" once
it holds and receives none. The node keeps serving meanwhile (as any node, it coordinates
calls for partitions it does not hold), so it can be stopped at any time after "left".
With ``--wait`` the command follows the moves and returns when the node has left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TextIO

from supernode.cluster.etcd import EtcdClient, EtcdConfig, EtcdError
from supernode.cluster.keys import Keys, LayoutError, NodeInfo
from supernode.cluster.placement import Placement, PlacementError
from supernode.config import ClusterSettings
from supernode.tls import NodeTls

_POLL_S = 1.0


class DecommissionError(Exception):
    """etcd could not be used, or the wait ran out; the one line the command prints."""


class CannotDecommission(DecommissionError):
    """The request itself is wrong: no such node, or the last node that holds the data."""


@dataclass(frozen=True)
class Progress:
    """How far a decommission is: partitions the node still holds (reads), receives, and
    partitions moving anywhere in the cluster."""

    state: str
    held: int
    incoming: int
    moving: int

    def line(self, node: str) -> str:
        return (
            f"{node}: {self.state}, holds {self.held} partitions, receives {self.incoming}; "
            f"{self.moving} partitions moving in the cluster"
        )


def progress_of(node: NodeInfo, placement: Placement | None, name: str) -> Progress:
    if placement is None:
        return Progress(node.state, 0, 0, 0)
    held = len(placement.partitions_of(name))
    incoming = sum(1 for p in placement.moves if name in placement.incoming(p))
    return Progress(node.state, held, incoming, len(placement.moves))


def check_can_leave(name: str, nodes: dict[str, NodeInfo]) -> None:
    """Refuse what would leave no node to hold the data, or names no node."""
    if name not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        raise CannotDecommission(f"no node {name!r} in this cluster (nodes: {known})")
    staying = [n for n, info in nodes.items() if n != name and info.planned]
    if nodes[name].planned and not staying:
        raise CannotDecommission(f"{name} is the last active node: its data has nowhere to go")


async def decommission(
    settings: ClusterSettings,
    name: str,
    *,
    wait_s: float | None,
    out: TextIO,
    tls: NodeTls | None = None,
) -> Progress:
    """Mark ``name`` leaving (unless it already is or has left); with ``wait_s``, follow it
    until it has left or the time is up (then ``DecommissionError``)."""
    if not settings.endpoints:
        raise DecommissionError("no etcd endpoints: pass --etcd-endpoints H:P[,H:P]")
    keys = Keys(settings.etcd_prefix)
    config = EtcdConfig(
        tuple(settings.endpoints), call_timeout_s=settings.etcd_timeout_seconds, tls=tls
    )
    try:
        async with EtcdClient(config) as etcd:
            await _mark_leaving(etcd, keys, name, out)
            progress = await _progress(etcd, keys, name)
            out.write(progress.line(name) + "\n")
            if wait_s is None:
                return progress
            async with asyncio.timeout(wait_s):
                while progress.state != "left":
                    await asyncio.sleep(_POLL_S)
                    latest = await _progress(etcd, keys, name)
                    if latest != progress:
                        out.write(latest.line(name) + "\n")
                    progress = latest
            return progress
    except TimeoutError:
        raise DecommissionError(
            f"{name} has not left after {wait_s:.0f} s; its partitions are still moving "
            "(see supernode status); run again with --wait to keep following"
        ) from None
    except (EtcdError, LayoutError, PlacementError) as exc:
        raise DecommissionError(f"etcd: {' '.join(str(exc).split())}") from exc


async def _mark_leaving(etcd: EtcdClient, keys: Keys, name: str, out: TextIO) -> None:
    nodes, revisions = {}, {}
    for entry in (await etcd.get_prefix(keys.nodes)).entries:
        node_name = keys.name_under(entry.key, keys.nodes)
        if node_name is not None:
            nodes[node_name] = NodeInfo.from_bytes(entry.value)
            revisions[node_name] = entry.mod_revision
    check_can_leave(name, nodes)
    node = nodes[name]
    if not node.planned:
        out.write(f"{name} is already {node.state}\n")
        return
    leaving = NodeInfo(node.address, node.zone, node.joined_at_ms, "leaving")
    if not await etcd.compare_and_swap(keys.node(name), leaving.to_bytes(), revisions[name]):
        raise DecommissionError(f"/nodes/{name} changed while being marked; run again")
    out.write(f"{name} is leaving: its partitions move to the other nodes\n")


async def _progress(etcd: EtcdClient, keys: Keys, name: str) -> Progress:
    entry = await etcd.get(keys.node(name))
    if entry is None:
        raise DecommissionError(f"/nodes/{name} disappeared")
    raw = await etcd.get(keys.placement)
    placement = None if raw is None else Placement.from_bytes(raw.value)
    return progress_of(NodeInfo.from_bytes(entry.value), placement, name)
