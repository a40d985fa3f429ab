"""The ring as a client sees it: which supernodes hold a handle, by placement epoch.

A ring-aware client learns the placement once from any node (``GetPlacement``) and then
sends each handle's calls straight to a replica of it, saving the hop a non-replica node
would make. Every presence answer of a clustered node carries its epoch
(``client_sdk.protocol.partition.EPOCH_METADATA``); a newer one than the client's means
partitions moved, and the client asks again before its next call. Reads are spread over a
partition's replicas by a per-client offset, so the owner does not serve every client.
Pure: no I/O, tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from client_sdk.protocol.partition import partition_of
from client_sdk.protocol.v1 import directory_pb2 as pb


class RingError(ValueError):
    """A placement answer that does not describe a usable ring."""


@dataclass(frozen=True)
class Ring:
    epoch: int
    replicas: tuple[tuple[str, ...], ...]  # per partition: the replicas' client addresses

    @classmethod
    def from_response(cls, answer: pb.GetPlacementResponse) -> Ring | None:
        """The ring an answer describes; None for a node that is not in a cluster."""
        if answer.epoch == 0:
            return None
        if answer.partitions != len(answer.replicas) or answer.partitions < 1:
            raise RingError(
                f"placement: {answer.partitions} partitions, {len(answer.replicas)} rows"
            )
        addresses = [node.address for node in answer.nodes]
        rows = []
        for row in answer.replicas:
            if not row.nodes or any(i >= len(addresses) for i in row.nodes):
                raise RingError("placement: a partition names no node or an unknown one")
            rows.append(tuple(addresses[i] for i in row.nodes))
        return cls(answer.epoch, tuple(rows))

    def replicas_of(self, handle: str) -> tuple[str, ...]:
        return self.replicas[partition_of(handle, len(self.replicas))]

    def target_for(self, handle: str, spread: int) -> str:
        """The replica this client sends ``handle``'s calls to first."""
        replicas = self.replicas_of(handle)
        return replicas[spread % len(replicas)]

    def holds(self, address: str, handle: str) -> bool:
        return address in self.replicas_of(handle)
