"""Writing one admitted version to every replica of its partition (quorum, hints).

The coordinator applies the write on each replica at once (its own store directly, the
others through ``ClusterService.Apply``) and returns when :class:`QuorumWrite` decides:
``w`` replicas hold it (acknowledged), or it cannot be (refused with the replicas' reason,
or unavailable). Replicas that could not be reached get a hint (``hints.py``) once every
reply is in or the deadline passed; the client is not kept waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from supernode.cluster.hints import HintBook
from supernode.cluster.peers import Peers
from supernode.cluster.quorum import Decision, QuorumWrite, Reply
from supernode.cluster.view import ClusterView
from supernode.directory.presence import DeviceWrite, Presence
from supernode.errors import Aborted, Reason, SupernodeError, Unavailable
from supernode.internal.v1 import cluster_pb2 as pb

log = logging.getLogger("supernode.cluster")

_DEADLINE_S = 5.0


class StaleRoute(Unavailable):
    """A replica holds a newer placement for the handle's partition than the one the call
    was routed by (a move began or flipped): route again once this node's view catches up.
    Reaching a client, it is UNAVAILABLE: retry."""

    reason = Reason.NOT_READY

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


def write_message(write: DeviceWrite) -> pb.DeviceWrite:
    return pb.DeviceWrite(
        handle=write.handle,
        device_id=write.device_id,
        seq=write.seq,
        expires_at_ms=write.expires_at_ms,
        device=write.device,
    )


def write_value(message: pb.DeviceWrite) -> DeviceWrite:
    return DeviceWrite(
        message.handle, message.device_id, message.seq, message.expires_at_ms, message.device
    )


class Replicator:
    def __init__(
        self,
        local: Presence,
        view: ClusterView,
        peers: Peers,
        hints: HintBook,
        *,
        name: str,
        write_quorum: int,
        count: Callable[[str], None],
    ) -> None:
        self._local = local
        self._view = view
        self._peers = peers
        self.hints = hints
        self.name = name
        self._write_quorum = write_quorum
        self._count = count
        self._background: set[asyncio.Task[None]] = set()
        self.repairs = 0  # versions sent to lagging replicas by read repair

    async def write(
        self,
        write: DeviceWrite,
        replicas: tuple[str, ...],
        epoch: int,
        *,
        fresh: bool,
        moving_to: tuple[str, ...] = (),
    ) -> None:
        """Return once acknowledged (by a quorum of ``replicas`` and, while the partition
        moves, of ``moving_to``); raise the refusal, ``StaleRoute``, or ``Unavailable``."""
        quorum = QuorumWrite(replicas, min(self._write_quorum, len(replicas)), moving_to)
        request = pb.ApplyRequest(write=write_message(write), epoch=epoch, fresh=fresh)
        raw = request.SerializeToString()
        decided = asyncio.Event()
        targets = quorum.targets
        if self.name in targets:
            reply, error = self._apply_here(write, fresh)
            if quorum.record(self.name, reply, error) is not Decision.PENDING:
                decided.set()

        async def ask(node: str) -> None:
            reply, error = await self._apply_there(node, raw)
            if quorum.record(node, reply, error) is not Decision.PENDING:
                decided.set()

        tasks = [asyncio.create_task(ask(node)) for node in targets if node != self.name]
        if tasks and not decided.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DEADLINE_S):
                    await decided.wait()
        finishing = asyncio.create_task(self._finish(quorum, tasks, write))
        self._background.add(finishing)
        finishing.add_done_callback(self._background.discard)
        decision = quorum.decision
        if decision is Decision.ACKNOWLEDGED:
            return
        if decision is Decision.REFUSED and isinstance(quorum.refusal, SupernodeError):
            raise quorum.refusal
        acks = quorum.acknowledgements
        message = (
            f"handle: {write.handle!r}: {acks} of its replicas {', '.join(targets)} took the "
            f"write, {quorum.w} of each replica set needed; retry"
        )
        if quorum.stale:
            raise StaleRoute(message, epoch)
        raise Unavailable(message, reason=Reason.REPLICAS_UNAVAILABLE)

    def _apply_here(self, write: DeviceWrite, fresh: bool) -> tuple[Reply, Exception | None]:
        try:
            change = self._local.apply_write(write, fresh)
        except SupernodeError as exc:
            return Reply.REFUSED, exc
        return (Reply.APPLIED if change is not None else Reply.HELD), None

    async def _apply_there(self, node: str, raw: bytes) -> tuple[Reply, Exception | None]:
        self._count("Apply")
        try:
            answer = await self._peers.unary(
                node, self._view.peer_address_of(node), "Apply", raw, deadline_s=_DEADLINE_S
            )
        except Unavailable as exc:
            return Reply.UNREACHABLE, exc
        except Aborted as exc:
            return Reply.STALE, exc
        except SupernodeError as exc:
            return Reply.REFUSED, exc
        applied = pb.ApplyResponse.FromString(answer).applied
        return (Reply.APPLIED if applied else Reply.HELD), None

    async def _finish(
        self, quorum: QuorumWrite, tasks: list[asyncio.Task[None]], write: DeviceWrite
    ) -> None:
        """After the client has its answer: wait for the rest, hint whoever missed it."""
        if tasks:
            await asyncio.wait(tasks, timeout=_DEADLINE_S)
        for task in tasks:
            task.cancel()
        quorum.timed_out()
        if quorum.acknowledgements == 0:
            return  # nobody holds it: the client was told, nothing to hand off
        message = write_message(write).SerializeToString()
        for node in quorum.need_hints:
            self.hints.add(node, message)

    def repair(self, node: str, write: DeviceWrite, epoch: int) -> None:
        """Read repair: give ``node`` a version it lacks (in the background for a peer; a
        peer that cannot be reached gets a hint instead)."""
        self.repairs += 1
        if node == self.name:
            self._apply_here(write, fresh=False)
            return
        request = pb.ApplyRequest(write=write_message(write), epoch=epoch, fresh=False)

        async def send() -> None:
            reply, _ = await self._apply_there(node, request.SerializeToString())
            if reply is Reply.UNREACHABLE:
                self.hints.add(node, write_message(write).SerializeToString())

        task = asyncio.create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def replay_hints(self, epoch: int) -> None:
        """Hand every reachable replica the writes it missed (members that are up)."""
        for target in list(self.hints.pending):
            if target not in self._view.members:
                continue

            async def send(message: bytes, target: str = target) -> None:
                request = pb.ApplyRequest(
                    write=pb.DeviceWrite.FromString(message), epoch=epoch, fresh=False
                )
                self._count("Apply")
                await self._peers.unary(
                    target, self._view.peer_address_of(target), "Apply", request.SerializeToString()
                )

            delivered = await self.hints.replay(target, send)
            if delivered:
                log.info("replayed %d hints to %s", delivered, target)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
