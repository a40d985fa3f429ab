"""The placement as a ring-aware client sees it (``PresenceService.GetPlacement``).

Encoded once per placement and node addresses, then served from that copy: every client
asks when it starts and after each epoch change, so a join must not cost an encoding per
client.
"""

from __future__ import annotations

from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.cluster.view import ClusterView


class RingAnswer:
    def __init__(self, view: ClusterView) -> None:
        self._view = view
        self._cached: tuple[object, bytes] | None = None

    def epoch(self) -> int:
        placement = self._view.placement
        return 0 if placement is None else placement.epoch

    def response(self) -> bytes:
        placement = self._view.placement
        if placement is None:
            return pb.GetPlacementResponse().SerializeToString()
        names = sorted(placement.nodes())
        addresses = tuple(self._view.address_of(name) for name in names)
        key = (placement.epoch, addresses)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        index = {name: i for i, name in enumerate(names)}
        nodes = [pb.PlacementNode(name=n, address=a) for n, a in zip(names, addresses, strict=True)]
        rows = [pb.PartitionReplicas(nodes=[index[n] for n in row]) for row in placement.replicas]
        answer = pb.GetPlacementResponse(
            epoch=placement.epoch, partitions=placement.partitions, nodes=nodes, replicas=rows
        ).SerializeToString()
        self._cached = (key, answer)
        return answer
