"""Presence calls in a cluster: any node takes any call and coordinates it.

Admission (parse, session, skew, signature, lease) runs once, on the node that took the
call; the admitted write goes to every replica of the handle's partition and is
acknowledged after ``write_quorum`` of them (``replication.py``). Lookups read ONE replica:
this node when it is one (the local, synchronous path of a node alone), else the first
replica that answers, live members first. A partition held by this node alone (replication
factor 1, or a one-node cluster) never leaves the single-node path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from client_sdk.protocol import wire
from client_sdk.protocol.v1 import directory_pb2 as dpb
from client_sdk.protocol.validation import check_device_id, check_handle
from supernode.cluster.peers import Peers
from supernode.cluster.placement import partition_of
from supernode.cluster.quorum import MergedRead, live, merge_reads
from supernode.cluster.replication import Replicator, StaleRoute, write_value
from supernode.cluster.view import ClusterView
from supernode.directory.account_record import AccountRecord
from supernode.directory.budget import ResponseBudget
from supernode.directory.ports import AccountKeys
from supernode.directory.presence import (
    LOOKUP_CHUNK,
    DeviceWrite,
    Presence,
    Registration,
    burial_seq,
    extended_lease,
    first_positions,
)
from supernode.errors import Aborted, NotFound, Reason, Unavailable
from supernode.internal.v1 import cluster_pb2 as pb
from supernode.rpc.directory import settled

T = TypeVar("T")
_ROUTE_ATTEMPTS = 3  # a call refused as stale is routed again this often
_CATCH_UP_S = 2.0  # how long a call waits for this node's view to pass a stale epoch


class ClusterPresence:
    def __init__(
        self,
        local: Presence,
        accounts: AccountKeys,
        view: ClusterView,
        peers: Peers,
        *,
        name: str,
        clock_ms: Callable[[], int],
    ) -> None:
        self.local = local
        self._accounts = accounts
        self.view = view
        self.peers = peers
        self.name = name
        self._clock_ms = clock_ms
        self.replicator: Replicator | None = None  # set by the member once hints are open
        self.forwarded: dict[str, int] = {}  # method -> calls sent to another node
        # Devices registered through this node whose partition it holds no replica of: the
        # rendezvous here (Listen, an offer's caller) must know they are live.
        self._attached: dict[tuple[str, str], int] = {}
        self._placement_changed = asyncio.Event()
        self.rerouted = 0  # calls routed again after a replica held a newer placement

    @property
    def _max_response_bytes(self) -> int:
        return self.local.replica.max_response_bytes

    def view_changed(self) -> None:
        """The mirror applied a new placement: wake the calls waiting to route again."""
        self._placement_changed.set()
        self._placement_changed = asyncio.Event()

    @property
    def online(self) -> int:
        return self.local.online

    def replicas_of(self, handle: str) -> tuple[tuple[str, ...], int]:
        """The replicas of ``handle``'s partition and the placement epoch that says so."""
        placement = self.view.placement
        if placement is None:
            raise Unavailable(
                "cluster: no placement yet (the controller has not planned one)",
                reason=Reason.NOT_READY,
            )
        return placement.replicas_of(partition_of(handle, placement.partitions)), placement.epoch

    def write_route(self, handle: str) -> tuple[tuple[str, ...], tuple[str, ...], int]:
        """Where a write to ``handle`` goes: its replicas, the replicas its partition is
        moving to (empty when it is not moving), and the epoch that says so."""
        placement = self.view.placement
        if placement is None:
            raise Unavailable(
                "cluster: no placement yet (the controller has not planned one)",
                reason=Reason.NOT_READY,
            )
        p = partition_of(handle, placement.partitions)
        return placement.replicas[p], placement.moves.get(p, ()), placement.epoch

    async def _rerouted(self, handle: str, attempt: Callable[[int], Awaitable[T]]) -> T:
        """Run ``attempt(n)``; when a replica says the route was stale, wait (bounded) for
        this node's view to move past that epoch and run it again."""
        for n in range(_ROUTE_ATTEMPTS):
            try:
                return await attempt(n)
            except StaleRoute as exc:
                self.rerouted += 1
                if n == _ROUTE_ATTEMPTS - 1:
                    raise
                await self._catch_up(exc.epoch)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _catch_up(self, epoch: int) -> None:
        deadline = asyncio.get_running_loop().time() + _CATCH_UP_S
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while self.view.placement is None or self.view.placement.epoch <= epoch:
                    await self._placement_changed.wait()

    def owner_of(self, handle: str) -> tuple[str, int]:
        replicas, epoch = self.replicas_of(handle)
        return replicas[0], epoch

    def _ordered(self, replicas: tuple[str, ...]) -> list[str]:
        """Where to read: live members first (placement order), then the others."""
        up = [node for node in replicas if node in self.view.members]
        return up + [node for node in replicas if node not in self.view.members]

    def is_live(self, handle: str, device_id: str, now_ms: int) -> bool:
        """Whether a device may listen or call here: live in the store when this node holds
        a replica of its handle, else registered through this node and not expired."""
        replicas, _ = self.replicas_of(handle)
        if self.name in replicas:
            return self.local.replica.is_live(handle, device_id, now_ms)
        expires_at_ms = self._attached.get((handle, device_id), 0)
        if expires_at_ms <= now_ms:
            self._attached.pop((handle, device_id), None)
            return False
        return True

    def count_forwarded(self, method: str) -> None:
        self.forwarded[method] = self.forwarded.get(method, 0) + 1

    async def _call(self, node: str, method: str, request: bytes) -> bytes:
        self.count_forwarded(method)
        return await self.peers.unary(node, self.view.peer_address_of(node), method, request)

    async def _first_answer(
        self, replicas: tuple[str, ...], method: str, request: bytes, handle: str
    ) -> bytes:
        """Ask the replicas one by one until one answers (a refusal is an answer)."""
        failures: list[str] = []
        for node in self._ordered(replicas):
            try:
                return await self._call(node, method, request)
            except (Unavailable, Aborted) as exc:  # down, or it knows a newer placement
                failures.append(str(exc))
        raise Unavailable(
            f"handle: {handle!r}: no replica of its partition answers ({'; '.join(failures)})",
            reason=Reason.REPLICAS_UNAVAILABLE,
        )

    def _replicator(self) -> Replicator:
        if self.replicator is None:
            raise Unavailable("cluster: this node is still starting", reason=Reason.NOT_READY)
        return self.replicator

    # ------------------------------------------------------------------ writes

    async def register(self, session_handle: str, signed: dpb.SignedDeviceRecord) -> Registration:
        candidate = self.local.admission.parse(session_handle, signed)
        replicas, moving_to, _ = self.write_route(candidate.record.handle)
        if replicas == (self.name,) and not moving_to:
            return self.local.register_candidate(candidate)
        admitted = self.local.admission.admit(candidate)
        write = admitted.write

        async def send(attempt: int) -> None:
            # Routed again, some replicas may hold it already: from then on it is a merge.
            await self._write(write, fresh=attempt == 0)

        await self._rerouted(write.handle, send)
        self._attached[(write.handle, write.device_id)] = write.expires_at_ms
        return Registration(write.expires_at_ms, admitted.ttl_seconds)

    async def unregister(self, session_handle: str, device_id: str, at_least_seq: int = 0) -> bool:
        """Bury the newest version any replica of a majority holds (or the client's higher
        ``at_least_seq``), on every replica."""
        check_device_id("device_id", device_id)
        replicas, moving_to, _ = self.write_route(session_handle)
        if replicas == (self.name,) and not moving_to:
            return self.local.unregister(session_handle, device_id, at_least_seq)
        self._attached.pop((session_handle, device_id), None)

        async def bury(attempt: int) -> bool:
            replicas, _, epoch = self.write_route(session_handle)
            held = await self._versions(session_handle, replicas, epoch)
            current = self._repair(session_handle, held, epoch).winners.get(device_id)
            seq = burial_seq(None if current is None else current.version, at_least_seq)
            if seq is None:
                return False
            tombstone = self.local.replica.tombstone(session_handle, device_id, seq)
            await self._write(tombstone, fresh=False)
            return (
                current is not None
                and not current.tombstone
                and current.expires_at_ms > self._clock_ms()
            )

        return await self._rerouted(session_handle, bury)

    async def keep_alive(self, session_handle: str, device_id: str, seq: int) -> Registration:
        """Extend the lease of the version a majority holds, on every replica.

        The majority read (as for an unregister) is what makes this safe: an acknowledged
        unregister is on a majority, so its tombstone is seen and the keepalive refused. A
        keepalive from one replica's copy alone could extend, on a replica that missed the
        unregister, a record past its tombstone's retention, to come back by repair later.
        """
        check_device_id("device_id", device_id)
        replicas, moving_to, _ = self.write_route(session_handle)
        if replicas == (self.name,) and not moving_to:
            return self.local.keep_alive(session_handle, device_id, seq)

        async def extend(attempt: int) -> Registration:
            replicas, _, epoch = self.write_route(session_handle)
            held = await self._versions(session_handle, replicas, epoch)
            current = self._repair(session_handle, held, epoch).winners.get(device_id)
            extended = extended_lease(current, seq, self._clock_ms(), self.local.replica.policy)
            await self._write(extended.write, fresh=False)
            return Registration(extended.write.expires_at_ms, extended.ttl_seconds)

        registration = await self._rerouted(session_handle, extend)
        self._attached[(session_handle, device_id)] = registration.expires_at_ms
        return registration

    async def _write(self, write: DeviceWrite, *, fresh: bool) -> None:
        """Replicate ``write`` by the current route (both replica sets while it moves)."""
        replicas, moving_to, epoch = self.write_route(write.handle)
        await self._replicator().write(write, replicas, epoch, fresh=fresh, moving_to=moving_to)

    async def _versions(
        self, handle: str, replicas: tuple[str, ...], epoch: int
    ) -> dict[str, list[DeviceWrite]]:
        """What a majority of the replicas hold for ``handle`` (tombstones included): the
        first majority to answer, this node first when it is one. ``Unavailable`` when no
        majority answers, since fewer might all have missed an acknowledged write;
        ``StaleRoute`` when that is because a replica knows a newer placement."""
        need = len(replicas) // 2 + 1
        held: dict[str, list[DeviceWrite]] = {}
        if self.name in replicas:
            held[self.name] = self.local.replica.versions(handle)
        request = pb.ReplicaLookupRequest(handles=[handle], epoch=epoch).SerializeToString()
        stale = False

        async def ask(node: str) -> tuple[str, list[DeviceWrite]]:
            raw = await self._call(node, "Versions", request)
            return node, [write_value(m) for m in pb.VersionsResponse.FromString(raw).versions]

        pending = {asyncio.create_task(ask(n)) for n in replicas if n != self.name}
        failures: list[str] = []
        try:
            while len(held) < need and pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    try:
                        node, versions = task.result()
                    except Aborted as exc:
                        stale = True
                        failures.append(str(exc))
                    except Unavailable as exc:
                        failures.append(str(exc))
                    else:
                        held[node] = versions
        finally:
            for task in pending:
                task.cancel()
        if len(held) < need:
            message = (
                f"handle: {handle!r}: {len(held)} of its replicas answered, {need} needed "
                f"({'; '.join(failures)})"
            )
            raise (
                StaleRoute(message, epoch)
                if stale
                else Unavailable(message, reason=Reason.REPLICAS_UNAVAILABLE)
            )
        return held

    def _repair(self, handle: str, held: dict[str, list[DeviceWrite]], epoch: int) -> MergedRead:
        """Merge what the replicas hold; bring every lagging one up to the winners."""
        merged = merge_reads(held)
        for node, lacking in merged.repairs.items():
            for write in lacking:
                self._replicator().repair(node, write, epoch)
        return merged

    # ------------------------------------------------------------------ reads

    def lookup(self, handle: str, quorum: bool = False) -> bytes | Awaitable[bytes]:
        replicas, epoch = self.replicas_of(handle)
        if quorum and len(replicas) > 1:
            return self._lookup_quorum(handle, replicas, epoch)
        if self.name in replicas:
            return self.local.lookup(handle)
        return self._lookup_remote(handle, replicas, epoch)

    async def _lookup_quorum(self, handle: str, replicas: tuple[str, ...], epoch: int) -> bytes:
        """The newest version of every device across a majority of the replicas (so every
        acknowledged write is seen), lagging replicas repaired on the way."""
        account = self._accounts.find(handle)
        if account is None:
            check_handle("handle", handle)
            raise NotFound(f"handle: no account {handle!r}", reason=Reason.ACCOUNT_NOT_FOUND)

        async def read(attempt: int) -> bytes:
            routed, at = (replicas, epoch) if attempt == 0 else self.replicas_of(handle)
            merged = self._repair(handle, await self._versions(handle, routed, at), at)
            return self._answer(handle, account, merged)

        return await self._rerouted(handle, read)

    async def _lookup_remote(self, handle: str, replicas: tuple[str, ...], epoch: int) -> bytes:
        # Checked here, not by the replica: its refusal would come back as a failed forward.
        check_handle("handle", handle)
        request = pb.ReplicaLookupRequest(handles=[handle], epoch=epoch).SerializeToString()
        try:
            return await self._first_answer(replicas, "Lookup", request, handle)
        except NotFound:
            account = self._accounts.find(handle)
            if account is None:
                raise
            return await self._assemble(handle, account)

    async def _assemble(self, handle: str, account: AccountRecord) -> bytes:
        """The answer for an account this node knows and the replicas' mirrors do not yet
        (just created elsewhere): the account from here, the live devices from them."""

        async def read(attempt: int) -> bytes:
            replicas, epoch = self.replicas_of(handle)
            held = await self._versions(handle, replicas, epoch)
            return self._answer(handle, account, merge_reads(held))

        return await self._rerouted(handle, read)

    def _answer(self, handle: str, account: AccountRecord, merged: MergedRead) -> bytes:
        """A Lookup answer from merged replica versions: the winners still live now."""
        devices = [w.device for w in live(merged.winners, self._clock_ms())]
        rotations = self._accounts.rotations(handle)
        return wire.lookup_response(account.account, devices, rotations, account.signature)

    def lookup_many(self, handles: Sequence[str], quorum: bool = False) -> bytes | Awaitable[bytes]:
        self.local.replica.check_batch(handles)
        asked = first_positions(handles)  # each answered once (Presence.lookup_many)
        handles = list(asked)
        if quorum:
            for handle, index in asked.items():
                check_handle(f"handles[{index}]", handle)
            return self._lookup_many_quorum(handles)
        by_replicas: dict[tuple[str, ...], list[str]] = {}
        epoch = 0
        for handle in handles:
            replicas, epoch = self.replicas_of(handle)
            key = (self.name,) if self.name in replicas else replicas
            by_replicas.setdefault(key, []).append(handle)
        if set(by_replicas) <= {(self.name,)}:
            return self.local.lookup_many(handles)
        for handle, index in asked.items():  # here: the replicas see only their share
            check_handle(f"handles[{index}]", handle)
        return self._gather(list(handles), by_replicas, epoch)

    async def _lookup_many_quorum(self, handles: list[str]) -> bytes:
        """Quorum reads a chunk of handles at a time, until the answer's budget is spent."""

        async def one(handle: str) -> bytes | None:
            replicas, epoch = self.replicas_of(handle)
            try:
                if len(replicas) > 1:
                    return await self._lookup_quorum(handle, replicas, epoch)
                return await settled(self.lookup(handle))  # one copy: ONE is QUORUM
            except NotFound:
                return None

        answers: dict[str, bytes | None] = {}
        budget = ResponseBudget(self._max_response_bytes)
        for start in range(0, len(handles), LOOKUP_CHUNK):
            chunk = handles[start : start + LOOKUP_CHUNK]
            read = await asyncio.gather(*(one(h) for h in chunk))
            for handle, answer in zip(chunk, read, strict=True):
                if not budget.take(len(handle) if answer is None else len(answer)):
                    return self._answer_many(handles, answers)
                answers[handle] = answer
        return self._answer_many(handles, answers)

    @staticmethod
    def _answer_many(handles: list[str], answers: Mapping[str, bytes | None]) -> bytes:
        """The ``LookupManyResponse`` in request order: found, not found (None), and the
        handles ``answers`` has no entry for, unanswered."""
        return wire.lookup_many_response(
            [answer for h in handles if (answer := answers.get(h)) is not None],
            [h for h in handles if h in answers and answers[h] is None],
            [h for h in handles if h not in answers],
        )

    async def _gather(
        self, handles: list[str], by_replicas: dict[tuple[str, ...], list[str]], epoch: int
    ) -> bytes:
        """Ask one replica of each share, concurrently; answer in request order, within the
        budget (each replica keeps its own share within it, and lists what it left out)."""

        async def ask(replicas: tuple[str, ...], share: list[str]) -> bytes:
            request = pb.ReplicaLookupRequest(handles=share, epoch=epoch).SerializeToString()
            return await self._first_answer(replicas, "LookupMany", request, share[0])

        remote = [(r, share) for r, share in by_replicas.items() if r != (self.name,)]
        answers = list(await asyncio.gather(*(ask(r, share) for r, share in remote)))
        if (self.name,) in by_replicas:
            answers.append(self.local.lookup_many(by_replicas[(self.name,)]))
        found: dict[str, bytes] = {}
        not_found: set[str] = set()
        for raw in answers:
            answer = dpb.LookupManyResponse.FromString(raw)
            for result in answer.results:
                found[result.account.handle] = result.SerializeToString()
            not_found.update(answer.not_found)
        for handle in list(not_found):  # known here, not yet in the replicas' mirrors
            account = self._accounts.find(handle)
            if account is not None:
                found[handle] = await self._assemble(handle, account)
                not_found.discard(handle)
        kept: dict[str, bytes | None] = {}
        budget = ResponseBudget(self._max_response_bytes)
        for handle in handles:
            if handle in found or handle in not_found:
                entry = found.get(handle)
                if not budget.take(len(handle) if entry is None else len(entry)):
                    break
                kept[handle] = entry
        return self._answer_many(handles, kept)
