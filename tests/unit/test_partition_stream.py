"""A move's source side and the decommission command's pure parts, without a cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supernode.cluster.decommission import CannotDecommission, check_can_leave, progress_of
from supernode.cluster.keys import LayoutError, NodeInfo
from supernode.cluster.placement import Placement, partition_of
from supernode.cluster.service import rest_after, stream_versions
from supernode.cluster.status import ClusterRead, build_report
from supernode.config import ClusterSettings
from supernode.directory.presence import DeviceWrite
from supernode.store import Store

PARTITIONS = 8


def fill(store: Store, handles: int, devices: int) -> dict[str, list[tuple[str, int]]]:
    stored: dict[str, list[tuple[str, int]]] = {}
    for h in range(handles):
        handle = f"user{h:03d}"
        for d in range(devices):
            seq = 10 * h + d + 1
            device = b"" if d == 2 else f"device {d}".encode()  # some tombstones
            store.put_device(
                handle, f"d{d}", seq=seq, expires_at_ms=10**13, device=device, previous=None
            )
            stored.setdefault(handle, []).append((f"d{d}", seq))
    return stored


async def collect(store: Store, wanted: frozenset[int], share: float = 1.0) -> list[DeviceWrite]:
    found: list[DeviceWrite] = []
    async for chunk in stream_versions(store.device_page, wanted, PARTITIONS, share):
        assert chunk and len(chunk) <= 500
        found.extend(chunk)
    return found


def test_a_stream_sends_every_version_of_the_partitions_asked_and_nothing_else(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    stored = fill(store, 700, 3)  # several pages and chunks
    wanted = frozenset({1, 4, 6})
    found = asyncio.run(collect(store, wanted))
    expected = sorted(
        (handle, device_id, seq)
        for handle, rows in stored.items()
        if partition_of(handle, PARTITIONS) in wanted
        for device_id, seq in rows
    )
    assert sorted((w.handle, w.device_id, w.seq) for w in found) == expected
    tombstones = [w for w in found if w.tombstone]
    assert tombstones and all(w.device_id == "d2" for w in tombstones)
    assert asyncio.run(collect(store, frozenset())) == []
    paced = asyncio.run(collect(store, wanted, share=0.5))  # resting between pages
    assert sorted((w.handle, w.device_id, w.seq) for w in paced) == expected
    store.close()


@given(st.floats(0, 10), st.floats(0.01, 1))
def test_a_stream_rests_so_that_its_work_is_the_share_asked(worked: float, share: float) -> None:
    rest = rest_after(worked, share)
    assert rest >= 0
    if worked > 1e-6:
        assert worked / (worked + rest) == pytest.approx(share)
    assert rest_after(worked, 1.0) == 0


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        rest_after(1.0, share)
    with pytest.raises(ValueError, match="stream_share"):
        ClusterSettings(stream_share=share)


def test_device_pages_cover_the_store_exactly_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    fill(store, 25, 2)
    keys: list[tuple[str, str]] = []
    start: bytes | None = b""
    for _ in range(100):
        if start is None:
            break
        rows, start = store.device_page(start, 7)
        assert len(rows) <= 7
        keys.extend((handle, device_id) for handle, device_id, *_ in rows)
    assert start is None
    assert keys == sorted(keys) and len(keys) == len(set(keys)) == 50
    store.close()


NODES = {
    "a": NodeInfo("a"),
    "b": NodeInfo("b"),
    "c": NodeInfo("c", state="leaving"),
    "d": NodeInfo("d", state="left"),
}


def test_decommission_refuses_strangers_and_the_last_active_node() -> None:
    with pytest.raises(CannotDecommission, match="no node 'x' in this cluster"):
        check_can_leave("x", NODES)
    check_can_leave("a", NODES)  # b stays
    with pytest.raises(CannotDecommission, match="last active node"):
        check_can_leave("a", {"a": NodeInfo("a"), "c": NodeInfo("c", state="leaving")})
    check_can_leave("c", NODES)  # already leaving: nothing new, no refusal


MOVING = Placement(6, 2, (("a", "c"), ("c", "b"), ("a", "b")), {0: ("a", "b")}, (6, 1, 1))


def test_progress_counts_what_the_node_still_holds_and_receives() -> None:
    progress = progress_of(NODES["c"], MOVING, "c")
    assert (progress.state, progress.held, progress.incoming, progress.moving) == (
        "leaving",
        2,
        0,
        1,
    )
    assert progress_of(NODES["b"], MOVING, "b").incoming == 1
    assert "c: leaving, holds 2 partitions, receives 0; 1 partitions moving" in progress.line("c")


def test_status_shows_moves_and_node_states() -> None:
    read = ClusterRead(
        endpoint="e",
        revision=9,
        nodes={name: info.to_bytes() for name, info in NODES.items()},
        members={},
        placement=MOVING.to_bytes(),
    )
    document = build_report(read, "/p").to_json()
    assert document["placement"]["moving"] == 1
    rows = {row["name"]: row for row in document["nodes"]}
    assert rows["b"]["partitions_incoming"] == 1 and rows["c"]["membership"] == "leaving"
    assert rows["d"]["membership"] == "left" and rows["d"]["partitions_held"] == 0


def test_node_records_refuse_unknown_states() -> None:
    with pytest.raises(LayoutError):
        NodeInfo.from_bytes(b'{"address": "a", "state": "gone"}')
    assert NodeInfo.from_bytes(b'{"address": "a"}').state == "active"  # older records
