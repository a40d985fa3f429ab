"""Presence calls in a cluster: any node takes any call and coordinates it (RF=1 here).

Admission (parse, session, skew, signature, lease) runs once, on the node that took the
call; the admitted write goes to the owner of the handle's partition, which applies it
(``ClusterService.Apply``). Lookups are answered by the owner. When the owner is this node
everything stays local and synchronous, exactly the single-node path; otherwise the call
returns a coroutine, which the gRPC edge awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from client_sdk.protocol import wire
from client_sdk.protocol.v1 import directory_pb2 as dpb
from client_sdk.protocol.validation import check_handle
from supernode.cluster.peers import Peers
from supernode.cluster.placement import partition_of
from supernode.cluster.view import ClusterView
from supernode.directory.presence import DeviceWrite, Presence, Registration
from supernode.errors import Unavailable
from supernode.internal.v1 import cluster_pb2 as pb


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


class ClusterPresence:
    def __init__(
        self, local: Presence, view: ClusterView, peers: Peers, *, name: str, partitions: int
    ) -> None:
        self.local = local
        self.view = view
        self.peers = peers
        self.name = name
        self._partitions = partitions
        self.forwarded: dict[str, int] = {}  # method -> calls sent to another node
        # Devices registered through this node whose partition another node owns: the
        # rendezvous here (Listen, an offer's caller) must know they are live.
        self._attached: dict[tuple[str, str], int] = {}

    @property
    def online(self) -> int:
        return self.local.online

    def owner_of(self, handle: str) -> tuple[str, int]:
        """The node that owns ``handle`` and the placement epoch that says so."""
        placement = self.view.placement
        if placement is None:
            raise Unavailable("cluster: no placement yet (the controller has not planned one)")
        partition = partition_of(handle, placement.partitions)
        return placement.replicas_of(partition)[0], placement.epoch

    def is_live(self, handle: str, device_id: str, now_ms: int) -> bool:
        """Whether a device may listen or call here: live in the store when this node owns
        its handle, else registered through this node and not expired."""
        owner, _ = self.owner_of(handle)
        if owner == self.name:
            return self.local.replica.is_live(handle, device_id, now_ms)
        expires_at_ms = self._attached.get((handle, device_id), 0)
        if expires_at_ms <= now_ms:
            self._attached.pop((handle, device_id), None)
            return False
        return True

    def count_forwarded(self, method: str) -> None:
        self.forwarded[method] = self.forwarded.get(method, 0) + 1

    async def _call(self, owner: str, method: str, request: bytes, handle: str) -> bytes:
        self.count_forwarded(method)
        try:
            return await self.peers.unary(owner, self.view.address_of(owner), method, request)
        except Unavailable as exc:
            raise Unavailable(
                f"handle: {handle!r} lives on node {owner}, which is unreachable "
                f"(one replica per partition in this version): {exc}"
            ) from exc

    # ------------------------------------------------------------------ writes

    async def register(self, session_handle: str, signed: dpb.SignedDeviceRecord) -> Registration:
        candidate = self.local.admission.parse(session_handle, signed)
        owner, epoch = self.owner_of(candidate.record.handle)
        if owner == self.name:
            return self.local.register_candidate(candidate)
        admitted = self.local.admission.admit(candidate)
        request = pb.ApplyRequest(write=write_message(admitted.write), epoch=epoch, fresh=True)
        await self._call(owner, "Apply", request.SerializeToString(), session_handle)
        write = admitted.write
        self._attached[(write.handle, write.device_id)] = write.expires_at_ms
        return Registration(write.expires_at_ms, admitted.ttl_seconds)

    async def unregister(self, session_handle: str, device_id: str) -> bool:
        owner, epoch = self.owner_of(session_handle)
        if owner == self.name:
            return self.local.unregister(session_handle, device_id)
        request = pb.RemoveRequest(handle=session_handle, device_id=device_id, epoch=epoch)
        raw = await self._call(owner, "Remove", request.SerializeToString(), session_handle)
        self._attached.pop((session_handle, device_id), None)
        return pb.RemoveResponse.FromString(raw).removed

    # ------------------------------------------------------------------ reads

    def lookup(self, handle: str) -> bytes | Awaitable[bytes]:
        owner, epoch = self.owner_of(handle)
        if owner == self.name:
            return self.local.lookup(handle)
        request = pb.ReplicaLookupRequest(handles=[handle], epoch=epoch).SerializeToString()
        return self._call(owner, "Lookup", request, handle)

    def lookup_many(self, handles: Sequence[str]) -> bytes | Awaitable[bytes]:
        self.local.replica.check_batch(handles)
        by_owner: dict[str, list[str]] = {}
        epoch = 0
        for handle in handles:
            owner, epoch = self.owner_of(handle)
            by_owner.setdefault(owner, []).append(handle)
        if set(by_owner) <= {self.name}:
            return self.local.lookup_many(handles)
        for index, handle in enumerate(handles):  # here: the owners see only their share
            check_handle(f"handles[{index}]", handle)
        return self._gather(list(handles), by_owner, epoch)

    async def _gather(
        self, handles: list[str], by_owner: dict[str, list[str]], epoch: int
    ) -> bytes:
        """Ask every owner for its share; answer in request order, as one node would."""
        found: dict[str, bytes] = {}
        not_found: set[str] = set()

        async def ask(owner: str, share: list[str]) -> bytes:
            request = pb.ReplicaLookupRequest(handles=share, epoch=epoch).SerializeToString()
            return await self._call(owner, "LookupMany", request, share[0])

        remote = [(owner, share) for owner, share in by_owner.items() if owner != self.name]
        answers = await asyncio.gather(*(ask(owner, share) for owner, share in remote))
        if self.name in by_owner:
            answers.append(self.local.lookup_many(by_owner[self.name]))
        for raw in answers:
            answer = dpb.LookupManyResponse.FromString(raw)
            for result in answer.results:
                found[result.account.handle] = result.SerializeToString()
            not_found.update(answer.not_found)
        results = [found[h] for h in handles if h in found]
        return wire.lookup_many_response(results, [h for h in handles if h in not_found])
