"""The cluster's metrics, read from the member's state at scrape time (no copies kept)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supernode.cluster.member import ClusterMember
from supernode.cluster.routing import ClusterPresence


class ClusterCollector(Collector):
    def __init__(self, member: ClusterMember, presence: ClusterPresence) -> None:
        self._member = member
        self._presence = presence

    def collect(self) -> Iterator[Metric]:
        member, view = self._member, self._member.view
        nodes = GaugeMetricFamily(
            "supernode_cluster_nodes",
            "Nodes that joined the cluster, by liveness (member key present or not).",
            labels=["state"],
        )
        up = sum(1 for name in view.nodes if name in view.members)
        nodes.add_metric(["up"], up)
        nodes.add_metric(["down"], len(view.nodes) - up)
        yield nodes
        placement = view.placement
        yield GaugeMetricFamily(
            "supernode_cluster_placement_epoch",
            "Epoch of the placement this node routes by (0: none yet).",
            value=0 if placement is None else placement.epoch,
        )
        yield GaugeMetricFamily(
            "supernode_cluster_partitions_owned",
            "Partitions this node owns (first replica).",
            value=0 if placement is None else len(placement.owned_by(member.name)),
        )
        yield GaugeMetricFamily(
            "supernode_cluster_partitions_moving",
            "Partitions moving between nodes in the whole cluster (join or decommission).",
            value=0 if placement is None else len(placement.moves),
        )
        yield CounterMetricFamily(
            "supernode_cluster_rerouted_calls",
            "Calls this node routed again because a replica held a newer placement.",
            value=self._presence.rerouted,
        )
        mover = member.mover
        if mover is not None:
            yield GaugeMetricFamily(
                "supernode_cluster_partitions_receiving",
                "Partitions moving to this node that it has not streamed yet.",
                value=mover.receiving,
            )
            moved = mover.counters
            for name, help_text, value in (
                ("partitions_streamed", "Partitions streamed here for moves.", moved.partitions),
                ("stream_versions", "Versions this node received by streaming.", moved.versions),
                ("stream_bytes", "Bytes of versions this node received by streaming.", moved.bytes),
                ("stream_seconds", "Seconds this node spent streaming partitions.", moved.seconds),
                ("stream_failures", "Streams from a replica that failed.", moved.failures),
            ):
                yield CounterMetricFamily(f"supernode_cluster_{name}", help_text, value=value)
            yield GaugeMetricFamily(
                "supernode_cluster_stream_seconds_per_partition",
                "Seconds per partition of this node's last streamed batch.",
                value=moved.last_batch_seconds_per_partition,
            )
        yield GaugeMetricFamily(
            "supernode_cluster_mirror_revision",
            "The last etcd revision this node's mirror applied.",
            value=view.revision,
        )
        yield GaugeMetricFamily(
            "supernode_cluster_mirror_lag_revisions",
            "etcd's newest revision this node has seen minus the one its mirror applied.",
            value=max(0, member.latest_revision - view.revision),
        )
        yield GaugeMetricFamily(
            "supernode_cluster_mirror_silence_seconds",
            "Seconds since the mirror last heard from etcd (events or the members' refreshes).",
            value=time.monotonic() - member.mirror.applied_at,
        )
        yield GaugeMetricFamily(
            "supernode_cluster_etcd_reachable",
            "1 while this node's watch on etcd is connected.",
            value=int(member.etcd_reachable),
        )
        yield GaugeMetricFamily(
            "supernode_cluster_controller",
            "1 while this node is the elected controller.",
            value=int(member.membership.is_controller),
        )
        yield CounterMetricFamily(
            "supernode_cluster_etcd_errors",
            "etcd operations of this node that failed (unreachable or refused).",
            value=member.etcd_errors,
        )
        hints = member.hints
        if hints is not None:
            yield GaugeMetricFamily(
                "supernode_cluster_hints_pending",
                "Writes kept for replicas that missed them (hinted handoff), not yet replayed.",
                value=hints.total,
            )
            for what, value in (
                ("stored", hints.counters.stored),
                ("replayed", hints.counters.replayed),
                ("dropped", hints.counters.dropped),
            ):
                yield CounterMetricFamily(
                    f"supernode_cluster_hints_{what}",
                    f"Hints {what} by this node since it started.",
                    value=value,
                )
        replicator = member.replicator
        if replicator is not None:
            yield CounterMetricFamily(
                "supernode_cluster_read_repairs",
                "Versions this node sent to lagging replicas after a QUORUM read.",
                value=replicator.repairs,
            )
        forwarded = CounterMetricFamily(
            "supernode_cluster_forwarded_calls",
            "Calls this node sent to another node of the cluster, by internal method.",
            labels=["method"],
        )
        for method, count in sorted(self._presence.forwarded.items()):
            forwarded.add_metric([method], count)
        yield forwarded
