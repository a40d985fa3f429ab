"""Watches across nodes: this node follows every other node's presence changes.

A watcher on this node may watch handles owned anywhere, so each node streams the changes
it commits to every other node (``ClusterService.Feed``), and this node hands them to its
own watch hub, which fans out locally. A feed that breaks may have dropped changes, so
every (re)connection interrupts this node's watches: they end with UNAVAILABLE and the SDK
resumes, getting a fresh snapshot instead of a silent gap. The one exception is the first
connection to a node that serves no reads yet (one that is joining): every write it may
have taken before the feed connected went to a quorum of the old replicas too, whose feeds
this node follows, so nothing was missed and a join does not make every watcher of the
cluster take a snapshot.

Step 1 streams every change to every node (cost grows with nodes x writes); per-handle
interest at the replicas, as docs/architecture.md section 5 describes, comes with replication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from supernode.cluster.peers import Peers
from supernode.cluster.view import ClusterView
from supernode.directory.presence import Change, DeviceChanged
from supernode.directory.watch import WatchHub
from supernode.errors import SupernodeError

log = logging.getLogger("supernode.cluster")

_RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0)


class RemoteFeeds:
    def __init__(self, view: ClusterView, peers: Peers, hub: WatchHub, *, name: str) -> None:
        self._view = view
        self._peers = peers
        self._hub = hub
        self.name = name
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.connected: set[str] = set()

    def sync(self) -> None:
        """Follow exactly the nodes that joined, other than this one."""
        wanted = set(self._view.nodes) - {self.name}
        for node in set(self._tasks) - wanted:
            self._tasks.pop(node).cancel()
        for node in wanted - set(self._tasks):
            self._tasks[node] = asyncio.create_task(self._follow(node), name=f"feed {node}")

    def _serves_reads(self, node: str) -> bool:
        placement = self._view.placement
        return placement is None or node in placement.nodes()

    async def _follow(self, node: str) -> None:
        failures = 0
        connected_before = False
        while True:
            try:
                async for event in self._peers.feed(self._view.peer_address_of(node)):
                    if event.HasField("ack"):
                        failures = 0
                        self.connected.add(node)
                        if connected_before or self._serves_reads(node):
                            self._hub.interrupt(f"the change feed of node {node} (re)connected")
                        connected_before = True
                        continue
                    change = event.change
                    self._hub.device_changed(
                        DeviceChanged(
                            change.handle,
                            change.device_id,
                            Change(change.change),
                            change.device or None,
                            change.seq,
                        )
                    )
            except (SupernodeError, Exception) as exc:
                log.debug("feed from %s: %s", node, exc)
            if node in self.connected:
                self.connected.discard(node)
                self._hub.interrupt(f"lost the change feed of node {node}")
            await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])
            failures += 1

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
