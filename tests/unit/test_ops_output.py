"""What the operator's commands print, from fixed inputs (supernode.ops.node_status,
supernode.ops.presence_output): the documented JSON keys and the human lines."""

from __future__ import annotations

from client_sdk import (
    Account,
    Device,
    DeviceStatus,
    Endpoint,
    EventKind,
    OfflineReason,
    Presence,
    PresenceEvent,
    SearchResult,
    WatchPosition,
)
from supernode.internal.v1 import admin_pb2 as pb
from supernode.ops.node_status import render_node, status_document
from supernode.ops.presence_output import (
    event_json,
    presence_json,
    render_event,
    render_presence,
    render_search,
    search_json,
)

KEYS = {
    "node", "version", "pid", "health", "started_at_ms", "uptime_seconds", "listen", "tls",
    "workers", "data_dir", "store", "accounts", "devices_online", "watchers", "listeners",
    "relay_sessions", "cluster",
}  # fmt: skip


def _status() -> pb.NodeStatusResponse:
    return pb.NodeStatusResponse(
        node="10.0.0.1:7700",
        version="1.2.3",
        pid=42,
        started_at_ms=1_000,
        grpc="10.0.0.1:7700",
        metrics="127.0.0.1:9700",
        tls=True,
        workers=[pb.WorkerStatus(pid=43, metrics="127.0.0.1:9701")],
        data_dir="/var/lib/supernode",
        store_size_bytes=3 << 20,
        disk_bytes=5 << 20,
        store_sequence=77,
        accounts=10,
        devices_online=4,
        watchers=2,
        health="serving",
    )


def test_node_status_document_has_the_documented_keys() -> None:
    alone = status_document(_status(), now_ms=3_500)
    assert set(alone) == KEYS
    assert alone["uptime_seconds"] == 2.5 and alone["cluster"] is None
    assert alone["listen"] == {
        "grpc": "10.0.0.1:7700",
        "metrics": "127.0.0.1:9700",
        "stun": "",
        "peer": "",
    }
    assert alone["store"] == {"size_bytes": 3 << 20, "disk_bytes": 5 << 20, "sequence": 77}
    assert alone["workers"] == [{"pid": 43, "metrics": "127.0.0.1:9701"}]
    member = _status()
    member.cluster.CopyFrom(
        pb.ClusterStatus(
            etcd_endpoints=["e:2379"], placement_epoch=3, nodes_up=2, nodes_total=3, peer="p:1"
        )
    )
    document = status_document(member, now_ms=1_000)
    assert document["listen"]["peer"] == "p:1"
    assert set(document["cluster"]) == {
        "etcd_endpoints", "etcd_reachable", "controller", "placement_epoch",
        "partitions_owned", "partitions_held", "nodes_up", "nodes_total", "mirror_revision",
        "mirror_lag_revisions", "hints_pending",
    }  # fmt: skip
    lines = render_node(document).splitlines()
    assert "grpc            10.0.0.1:7700 (TLS)" in lines
    assert "store           3.0 MiB in RocksDB, 5.0 MiB on disk, sequence 77" in lines
    assert any(
        line.startswith("cluster ") and "2/3 nodes up, placement epoch 3" in line for line in lines
    )
    assert "cluster         none (serves alone)" in render_node(alone).splitlines()


DEVICE = Device(
    handle="bob",
    device_id="phone",
    seq=3,
    issued_at_ms=5,
    ttl_seconds=60,
    endpoints=(Endpoint("2001:db8::1", 5000), Endpoint("192.0.2.1", 5001)),
    transport_key=b"\x01" * 32,
    status=DeviceStatus.AWAY,
    capabilities=("audio",),
    expires_at_ms=65_000,
    attached_supernode="sn1",
    record=b"r",
    signature=b"s",
)
PRESENCE = Presence(Account("bob", b"\xab" * 32, "Bob B"), (DEVICE,))
POSITION = WatchPosition("e1", 7)


def test_presence_json_and_table() -> None:
    document = presence_json(PRESENCE)
    assert document["account"]["account_key"] == "ab" * 32
    assert document["devices"][0]["endpoints"] == [
        "udp:[2001:db8::1]:5000/host",
        "udp:192.0.2.1:5001/host",
    ]
    assert document["devices"][0]["status"] == "away"
    table = render_presence(PRESENCE).splitlines()
    assert table[0].startswith("bob  'Bob B'  key abababababababab...  discoverable  1 device(s)")
    assert table[1].split() == ["DEVICE", "STATUS", "SEQ", "EXPIRES_MS", "ATTACHED", "ENDPOINTS"]
    assert table[2].split()[:5] == ["phone", "away", "3", "65000", "sn1"]
    results = [SearchResult("bob", "Bob B", b"\xab" * 32)]
    assert search_json("bo", results)["results"][0]["handle"] == "bob"
    assert render_search([]) == "no matches\n"
    assert render_search(results).splitlines()[1].startswith("bob     Bob B")


def test_watch_events_as_json_lines_and_text() -> None:
    snapshot = PresenceEvent(
        EventKind.SNAPSHOT, POSITION, snapshot={"bob": PRESENCE}, not_found=("ghost",)
    )
    assert event_json(snapshot) == {
        "kind": "snapshot",
        "snapshot": {"bob": presence_json(PRESENCE)},
        "not_found": ["ghost"],
        "after_gap": False,
    }
    assert render_event(snapshot) == (
        "snapshot bob: 1 device(s) phone=away\nsnapshot ghost: no such account\n"
    )
    online = PresenceEvent(EventKind.ONLINE, POSITION, "bob", "phone", device=DEVICE)
    assert event_json(online)["device"]["seq"] == 3
    assert render_event(online) == "online bob/phone seq 3 away\n"
    gone = PresenceEvent(EventKind.OFFLINE, POSITION, "bob", "phone", reason=OfflineReason.EXPIRED)
    assert event_json(gone) == {
        "kind": "offline",
        "handle": "bob",
        "device_id": "phone",
        "reason": "expired",
    }
    assert render_event(gone) == "offline bob/phone (expired)\n"
