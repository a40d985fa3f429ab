"""The receiving end of a partition move: stream, merge, report.

When the controller starts a move that adds this node to a partition (``moves.advance``),
coordinators already send the partition's new writes here; what this node still lacks is
everything written before. The mover asks each old replica for the partitions it holds of
this node's share (``ClusterService.Stream``, one pass over the replica's store per batch)
and merges every version it gets (the merge rule makes the order irrelevant and a version
seen twice harmless). A partition is streamed once a majority of its old replicas sent it
whole: a majority holds every acknowledged write. The node then reports the partitions
under ``/streamed/<node>`` (its own lease: a node that dies takes its reports with it), and
the controller flips them.

Streamed versions are merged without telling watchers: they are old news, told when they
were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from supernode.cluster.etcd import EtcdClient, EtcdError, KeptLease
from supernode.cluster.keys import Keys, streamed_to_bytes
from supernode.cluster.moves import moving_to
from supernode.cluster.peers import Peers
from supernode.cluster.placement import Placement
from supernode.cluster.replication import write_value
from supernode.cluster.view import ClusterView
from supernode.directory.presence import Replica
from supernode.errors import SupernodeError
from supernode.internal.v1 import cluster_pb2 as pb

log = logging.getLogger("supernode.cluster")

_RETRY_S = 1.0
_APPLY_BATCH = 100  # streamed versions applied between yields to the event loop


@dataclass
class MoveCounters:
    partitions: int = 0  # partitions this node streamed and reported
    versions: int = 0  # versions received from old replicas
    bytes: int = 0  # serialized bytes of those versions
    seconds: float = 0.0  # time spent streaming, summed over batches
    failures: int = 0  # streams from a replica that failed (it is asked again later)
    last_batch_seconds_per_partition: float = 0.0


class Mover:
    def __init__(
        self,
        view: ClusterView,
        peers: Peers,
        replica: Replica,
        etcd: EtcdClient,
        keys: Keys,
        *,
        name: str,
        lease: Callable[[], KeptLease | None],
    ) -> None:
        self._view = view
        self._peers = peers
        self._replica = replica
        self._etcd = etcd
        self._keys = keys
        self.name = name
        self._lease = lease
        self._wake = asyncio.Event()
        self.done: dict[int, int] = {}  # partition -> epoch of the move it was streamed for
        self._published: dict[int, int] | None = None
        self.counters = MoveCounters()

    def view_changed(self) -> None:
        self._wake.set()

    @property
    def receiving(self) -> int:
        """Partitions moving to this node that it has not streamed yet."""
        placement = self._view.placement
        if placement is None:
            return 0
        return sum(1 for p, e in moving_to(placement, self.name).items() if self.done.get(p) != e)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.step()
            except EtcdError as exc:
                log.debug("mover: %s", exc)
            except Exception:
                log.exception("mover: step failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RETRY_S):
                    await self._wake.wait()

    async def step(self) -> None:
        """Stream what is due, then report; each call makes what progress it can."""
        placement = self._view.placement
        if placement is None:
            return
        wanted = moving_to(placement, self.name)
        self.done = {p: e for p, e in self.done.items() if wanted.get(p) == e}
        due = {p: e for p, e in wanted.items() if self.done.get(p) != e}
        if due:
            self.done.update({p: due[p] for p in await self._stream(placement, due)})
        await self._publish()

    async def _stream(self, placement: Placement, due: dict[int, int]) -> list[int]:
        """Stream ``due`` from the old replicas; the partitions a majority sent whole."""
        started = time.monotonic()
        by_source: dict[str, list[int]] = {}
        for p in due:
            for node in placement.replicas[p]:
                if node != self.name:
                    by_source.setdefault(node, []).append(p)
        sources = sorted(by_source, key=lambda node: node not in self._view.members)
        epoch = max(due.values())
        count = placement.partitions
        results = await asyncio.gather(
            *(self._stream_from(node, by_source[node], epoch, count) for node in sources)
        )
        sent: dict[int, int] = {}
        for node, ok in zip(sources, results, strict=True):
            if ok:
                for p in by_source[node]:
                    sent[p] = sent.get(p, 0) + 1
        finished = [p for p in due if sent.get(p, 0) >= len(placement.replicas[p]) // 2 + 1]
        elapsed = time.monotonic() - started
        self.counters.seconds += elapsed
        self.counters.partitions += len(finished)
        if finished:
            self.counters.last_batch_seconds_per_partition = elapsed / len(finished)
            log.info(
                "streamed %d partitions in %.2f s (%d still due)",
                len(finished),
                elapsed,
                len(due) - len(finished),
            )
        return finished

    async def _stream_from(self, node: str, partitions: list[int], epoch: int, count: int) -> bool:
        request = pb.StreamRequest(partitions=partitions, partition_count=count, epoch=epoch)
        try:
            async for chunk in self._peers.stream(node, self._view.peer_address_of(node), request):
                for index, message in enumerate(chunk.versions, 1):
                    self._replica.apply(write_value(message))
                    self.counters.versions += 1
                    self.counters.bytes += message.ByteSize()
                    if index % _APPLY_BATCH == 0:  # writes to this node wait meanwhile:
                        await asyncio.sleep(0)  # let them in between batches
        except SupernodeError as exc:
            self.counters.failures += 1
            log.info("mover: %d partitions from %s failed: %s", len(partitions), node, exc)
            return False
        return True

    async def _publish(self) -> None:
        """Report what is streamed (or that nothing is any more), under this node's lease."""
        if self.done == self._published:
            return
        lease = self._lease()
        if lease is None or lease.lost.is_set():
            return
        key = self._keys.streamed_by(self.name)
        if self.done:
            await self._etcd.put(key, streamed_to_bytes(self.done), lease)
        else:
            await self._etcd.delete(key)
        self._published = dict(self.done)
