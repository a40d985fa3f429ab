"""A node's place in the cluster: its member key under its own lease, and the controller.

* Liveness: ``/members/<node>`` under one lease per node (nothing per device), refreshed by
  the etcd adapter; when the lease is lost (etcd unreachable for longer than its TTL) a new
  one is granted and the key put again once etcd answers.
* Joining: ``/nodes/<node>`` without a lease, so a node that is down keeps its partitions.
* The controller: one node at a time, elected by create-if-absent on ``/controller`` under
  its lease. It plans where partitions should be over the active joined nodes
  (``placement.plan``), dropping a node only after it has been down for
  ``down_grace_seconds`` or once it is decommissioned, and moves them there a few at a time
  (``moves.advance``: a partition flips once its new nodes streamed it), writing each step
  by compare-and-swap on the placement's revision: no other node ever writes placement.
  A decommissioned node that no longer holds or receives any partition is marked "left".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from supernode.cluster.etcd import EtcdClient, EtcdError, EtcdUnavailable, KeptLease
from supernode.cluster.keys import Keys, MemberInfo, NodeInfo
from supernode.cluster.moves import advance
from supernode.cluster.placement import Placement, plan
from supernode.cluster.view import ClusterView
from supernode.config import ClusterSettings

log = logging.getLogger("supernode.cluster")

_CONTROL_INTERVAL_S = 1.0
# The member value is rewritten this often with the node's mirror revision (status and the
# lag metric read it): a write per node every few seconds, never per device.
_PUBLISH_INTERVAL_S = 5.0


def members_to_plan(
    view: ClusterView, down_since: dict[str, float], now: float, grace_s: float
) -> dict[str, str]:
    """Active joined nodes that are up, or down for less than the grace period: name -> zone."""
    planned = {}
    for name, node in view.nodes.items():
        if not node.planned:
            continue
        if name in view.members:
            down_since.pop(name, None)
        elif now - down_since.setdefault(name, now) >= grace_s:
            continue
        planned[name] = node.zone
    return planned


class Membership:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: Keys,
        view: ClusterView,
        settings: ClusterSettings,
        *,
        name: str,
        info: Callable[[], MemberInfo],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._etcd = etcd
        self._keys = keys
        self._view = view
        self._settings = settings
        self.name = name
        self._info = info
        self._clock = clock
        self.lease: KeptLease | None = None
        self.is_controller = False
        self.etcd_errors = 0
        self._down_since: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._published: MemberInfo | None = None
        self._published_at = clock()

    def view_changed(self) -> None:
        self._wake.set()

    async def join(self) -> None:
        """Register as a node and as a live member (the first time etcd answers).

        A node that was decommissioned and is started again joins anew; one that is still
        leaving stays leaving (a restart must not undo an operator's decommission)."""
        info = self._info()
        node = NodeInfo(info.address, info.zone, int(time.time() * 1000))
        existing = await self._etcd.get(self._keys.node(self.name))
        known = None if existing is None else NodeInfo.from_bytes(existing.value)
        if known is None or known.address != info.address or known.state == "left":
            await self._etcd.put(self._keys.node(self.name), node.to_bytes())
        elif known.state == "leaving":
            log.warning("this node is being decommissioned: its partitions are moving away")
        await self._go_live()

    async def _go_live(self) -> None:
        self.lease = await self._etcd.grant_kept_lease(self._settings.member_ttl_seconds)
        info = self._info()
        await self._etcd.put(self._keys.member(self.name), info.to_bytes(), self.lease)
        self._published = info

    async def run(self) -> None:
        """Keep the member key alive and take part in the controller election."""
        while True:
            try:
                if self.lease is None or self.lease.lost.is_set():
                    if self.lease is not None:
                        log.warning("member lease lost (%s); rejoining", self.lease.lost_reason)
                        self.is_controller = False
                    await self._go_live()
                await self._control()
                if self._clock() - self._published_at >= _PUBLISH_INTERVAL_S:
                    await self.publish_info()
            except EtcdUnavailable as exc:
                self.etcd_errors += 1
                log.debug("membership: %s", exc)
            except EtcdError as exc:
                self.etcd_errors += 1
                log.warning("membership: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CONTROL_INTERVAL_S):
                    await self._wake.wait()

    async def publish_info(self) -> None:
        """Rewrite the member value when it changed (a newer mirror revision)."""
        self._published_at = self._clock()
        info = self._info()
        if self.lease is None or self.lease.lost.is_set() or info == self._published:
            return
        await self._etcd.put(self._keys.member(self.name), info.to_bytes(), self.lease)
        self._published = info

    async def _control(self) -> None:
        assert self.lease is not None
        if not self.is_controller:
            if self._view.controller and self._view.controller != self.name:
                return
            self.is_controller = await self._etcd.create_if_absent(
                self._keys.controller, self.name.encode(), self.lease
            )
            if not self.is_controller:
                return
            log.info("this node is the cluster controller")
            self._down_since.clear()
        await self._plan()

    async def _plan(self) -> None:
        settings = self._settings
        current = await self._etcd.get(self._keys.placement)
        previous = None if current is None else Placement.from_bytes(current.value)
        members = members_to_plan(
            self._view, self._down_since, self._clock(), settings.down_grace_seconds
        )
        if not members:
            return
        if previous is not None and previous.partitions != settings.partitions:
            log.error(
                "placement has %d partitions, this node is configured for %d: not planning",
                previous.partitions,
                settings.partitions,
            )
            return
        # Plan from where the moves in flight lead, so a plan in progress is not replanned.
        destination = plan(
            None if previous is None else previous.eventual(),
            members,
            replication_factor=settings.replication_factor,
            partitions=settings.partitions,
        )
        if previous is None:  # a new cluster: nothing to move, the first plan stands
            proposed = destination
        else:
            proposed = advance(
                previous,
                destination.replicas,
                self._view.streamed,
                max_moving=settings.max_moving_partitions,
            )
        if proposed is not previous:
            revision = 0 if current is None else current.mod_revision
            if not await self._etcd.compare_and_swap(
                self._keys.placement, proposed.to_bytes(), revision
            ):
                return
            log.info(
                "placement epoch %d over %d nodes: %d partitions moving, %d to go",
                proposed.epoch,
                len(members),
                len(proposed.moves),
                sum(a != b for a, b in zip(proposed.replicas, destination.replicas, strict=True)),
            )
        await self._finish_decommissions(proposed)

    async def _finish_decommissions(self, placement: Placement) -> None:
        """Mark "left" every leaving node that no longer holds or receives a partition."""
        involved = placement.involved()
        for name, node in list(self._view.nodes.items()):
            if node.state == "leaving" and name not in involved:
                done = NodeInfo(node.address, node.zone, node.joined_at_ms, "left")
                await self._etcd.put(self._keys.node(name), done.to_bytes())
                log.info("node %s is decommissioned: it holds no partition, stop it", name)

    async def leave(self) -> None:
        """Stopping cleanly: give up the member key and the controller role at once."""
        if self.lease is not None:
            with contextlib.suppress(EtcdError):
                await self.lease.revoke()
