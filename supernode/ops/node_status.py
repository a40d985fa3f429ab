"""``supernode status --data-dir DIR``: one running node, as its admin socket reports it.

The node answers with :class:`supernode.internal.v1.admin_pb2.NodeStatusResponse`; this
module turns that into the ``--json`` document and the table, both pure functions of the
answer and the time of asking. ``--json`` prints one object with these stable keys::

    {
      "node": "127.0.0.1:7700",         # the node's name (advertised host:port in a cluster)
      "version": "0.1.0",
      "pid": 1234,                       # the primary process
      "health": "serving",               # "serving"; "degraded": its cluster's etcd is
                                         # unreachable (it serves from its mirror); "stopping"
      "started_at_ms": 1765000000000,    # when it became ready (Unix ms)
      "uptime_seconds": 12.5,
      "listen": {"grpc": "127.0.0.1:7700", "metrics": "127.0.0.1:9700",
                 "stun": "127.0.0.1:3478" | "", "peer": "127.0.0.1:40001" | ""},
      "tls": true,                       # the public port serves TLS
      "workers": [{"pid": 1240, "metrics": "127.0.0.1:9701"}, ...],  # besides the primary
      "data_dir": "/var/lib/supernode",
      "store": {"size_bytes": 1048576,   # RocksDB SST files plus memtables
                "disk_bytes": 2097152,   # every file under data_dir (WAL, logs, workers')
                "sequence": 4242},       # RocksDB's latest sequence number
      "accounts": 10,
      "devices_online": 3,               # device records with a live lease: one lease each
      "watchers": 1,                     # open watch streams (on the primary)
      "listeners": 2,                    # devices listening for offers
      "relay_sessions": 0,
      "cluster": null | {                # null: the node serves alone
        "etcd_endpoints": ["127.0.0.1:2379"], "etcd_reachable": true, "controller": false,
        "placement_epoch": 3, "partitions_owned": 342, "partitions_held": 1024,
        "nodes_up": 3, "nodes_total": 3, "mirror_revision": 40, "mirror_lag_revisions": 0,
        "hints_pending": 0
      }
    }
"""

from __future__ import annotations

from typing import Any

from supernode.internal.v1 import admin_pb2 as pb


def status_document(status: pb.NodeStatusResponse, now_ms: int) -> dict[str, Any]:
    """The ``--json`` object (keys in the module docstring)."""
    cluster = None
    if status.HasField("cluster"):
        c = status.cluster
        cluster = {
            "etcd_endpoints": list(c.etcd_endpoints),
            "etcd_reachable": c.etcd_reachable,
            "controller": c.controller,
            "placement_epoch": c.placement_epoch,
            "partitions_owned": c.partitions_owned,
            "partitions_held": c.partitions_held,
            "nodes_up": c.nodes_up,
            "nodes_total": c.nodes_total,
            "mirror_revision": c.mirror_revision,
            "mirror_lag_revisions": c.mirror_lag_revisions,
            "hints_pending": c.hints_pending,
        }
    return {
        "node": status.node,
        "version": status.version,
        "pid": status.pid,
        "health": status.health,
        "started_at_ms": status.started_at_ms,
        "uptime_seconds": round(max(0, now_ms - status.started_at_ms) / 1000, 3),
        "listen": {
            "grpc": status.grpc,
            "metrics": status.metrics,
            "stun": status.stun,
            "peer": status.cluster.peer if status.HasField("cluster") else "",
        },
        "tls": status.tls,
        "workers": [{"pid": w.pid, "metrics": w.metrics} for w in status.workers],
        "data_dir": status.data_dir,
        "store": {
            "size_bytes": status.store_size_bytes,
            "disk_bytes": status.disk_bytes,
            "sequence": status.store_sequence,
        },
        "accounts": status.accounts,
        "devices_online": status.devices_online,
        "watchers": status.watchers,
        "listeners": status.listeners,
        "relay_sessions": status.relay_sessions,
        "cluster": cluster,
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h{minutes}m"
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{seconds:.1f}s"


def render_node(document: dict[str, Any]) -> str:
    """The human output: one ``name  value`` line per fact, aligned."""
    listen = document["listen"]
    store = document["store"]
    workers = document["workers"]
    rows = [
        ("node", document["node"]),
        ("health", document["health"]),
        ("version", document["version"]),
        ("pid", str(document["pid"])),
        ("uptime", _duration(document["uptime_seconds"])),
        ("grpc", f"{listen['grpc']} ({'TLS' if document['tls'] else 'plaintext'})"),
        ("metrics", listen["metrics"]),
        ("stun", listen["stun"] or "off"),
        (
            "workers",
            ", ".join(f"pid {w['pid']} metrics {w['metrics']}" for w in workers)
            if workers
            else "none (one process)",
        ),
        ("data dir", document["data_dir"]),
        (
            "store",
            f"{_size(store['size_bytes'])} in RocksDB, {_size(store['disk_bytes'])} on disk, "
            f"sequence {store['sequence']}",
        ),
        ("accounts", str(document["accounts"])),
        ("devices online", f"{document['devices_online']} (live leases)"),
        ("watchers", str(document["watchers"])),
        ("listeners", str(document["listeners"])),
        ("relay sessions", str(document["relay_sessions"])),
    ]
    cluster = document["cluster"]
    if cluster is None:
        rows.append(("cluster", "none (serves alone)"))
    else:
        rows += [
            (
                "cluster",
                f"{cluster['nodes_up']}/{cluster['nodes_total']} nodes up, placement epoch "
                f"{cluster['placement_epoch']}, {cluster['partitions_owned']} partitions "
                f"owned, {cluster['partitions_held']} held"
                + (", controller" if cluster["controller"] else ""),
            ),
            (
                "etcd",
                f"{','.join(cluster['etcd_endpoints'])} "
                f"{'reachable' if cluster['etcd_reachable'] else 'UNREACHABLE'}, mirror at "
                f"revision {cluster['mirror_revision']} (lag {cluster['mirror_lag_revisions']})",
            ),
            ("peer", listen["peer"] or "-"),
            ("hints pending", str(cluster["hints_pending"])),
        ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name.ljust(width)}  {value}\n" for name, value in rows)
