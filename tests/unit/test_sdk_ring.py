"""The SDK's ring (client_sdk/ring.py): decoding the placement answer, choosing a replica."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.protocol.partition import partition_of
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.ring import Ring, RingError
from supernode.cluster.placement import partition_of as server_partition_of

ANSWER = pb.GetPlacementResponse(
    epoch=7,
    partitions=2,
    nodes=[pb.PlacementNode(name=n, address=f"10.0.0.{i}:7700") for i, n in enumerate("abc")],
    replicas=[pb.PartitionReplicas(nodes=[0, 1]), pb.PartitionReplicas(nodes=[2, 0])],
)


def test_an_answer_becomes_a_ring_and_a_plain_node_none() -> None:
    ring = Ring.from_response(ANSWER)
    assert ring is not None and ring.epoch == 7
    assert ring.replicas == (("10.0.0.0:7700", "10.0.0.1:7700"), ("10.0.0.2:7700", "10.0.0.0:7700"))
    assert Ring.from_response(pb.GetPlacementResponse()) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"partitions": 3},
        {"replicas": [pb.PartitionReplicas(nodes=[0]), pb.PartitionReplicas(nodes=[9])]},
        {"replicas": [pb.PartitionReplicas(nodes=[0]), pb.PartitionReplicas()]},
    ],
)
def test_broken_answers_are_refused(changes: dict[str, object]) -> None:
    answer = pb.GetPlacementResponse()
    answer.CopyFrom(ANSWER)
    for field, value in changes.items():
        if field == "replicas":
            del answer.replicas[:]
            answer.replicas.extend(value)  # type: ignore[arg-type]
        else:
            setattr(answer, field, value)
    with pytest.raises(RingError):
        Ring.from_response(answer)


@given(st.text(min_size=1, max_size=40), st.integers(0, 1 << 16))
def test_the_target_is_a_replica_and_the_hash_is_the_servers(handle: str, spread: int) -> None:
    ring = Ring.from_response(ANSWER)
    assert ring is not None
    assert ring.target_for(handle, spread) in ring.replicas_of(handle)
    assert ring.holds(ring.target_for(handle, spread), handle)
    assert partition_of(handle, 1024) == server_partition_of(handle, 1024)


def test_spreads_pick_every_replica() -> None:
    ring = Ring.from_response(ANSWER)
    assert ring is not None
    assert {ring.target_for("x", spread) for spread in range(4)} == set(ring.replicas_of("x"))
