"""The rolling restart's decisions: when the cluster is whole enough to restart the next node."""

from __future__ import annotations

from supernode.cluster.rolling import NodeHealth, health_from_metrics, waiting_for

METRICS = """\
# HELP supernode_cluster_nodes Nodes that joined the cluster, by liveness.
# TYPE supernode_cluster_nodes gauge
supernode_cluster_nodes{state="up"} 3.0
supernode_cluster_nodes{state="down"} 0.0
# TYPE supernode_cluster_hints_pending gauge
supernode_cluster_hints_pending 4.0
# TYPE supernode_cluster_partitions_moving gauge
supernode_cluster_partitions_moving 0.0
# TYPE supernode_cluster_etcd_reachable gauge
supernode_cluster_etcd_reachable 1.0
"""


def whole(name: str) -> NodeHealth:
    return NodeHealth(name, 3, 0, 0, 0, True)


def test_metrics_are_read_by_name_and_label() -> None:
    assert health_from_metrics("a", METRICS) == NodeHealth("a", 3, 0, 4, 0, True)
    assert health_from_metrics("b", "") == NodeHealth("b", 0, 0, 0, 0, False)


def test_the_cluster_is_whole_only_when_every_node_says_so() -> None:
    nodes = [whole("a"), whole("b"), whole("c")]
    assert waiting_for(nodes, 3) is None
    assert waiting_for(nodes[:2], 3) == "1 nodes do not answer on /metrics"
    cases = [
        (NodeHealth("c", 2, 1, 0, 0, True), "c sees 2 of 3 nodes up"),
        (NodeHealth("c", 3, 0, 7, 0, True), "c holds 7 hints not yet replayed"),
        (NodeHealth("c", 3, 0, 0, 5, True), "c sees 5 partitions moving"),
        (NodeHealth("c", 3, 0, 0, 0, False), "c: etcd unreachable"),
    ]
    for health, reason in cases:
        assert waiting_for([*nodes[:2], health], 3) == reason
