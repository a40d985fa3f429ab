"""Placement laws: distinct replicas, zone spread, balance, minimal movement, determinism,
epochs, the etcd encoding and the handle -> partition hash."""

import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.cluster.placement import (
    FORMAT,
    Placement,
    PlacementError,
    fair_shares,
    partition_of,
    plan,
)

Members = dict[str, str]
EPS = 1e-9
NAMES = st.text(alphabet="abcdefghij-0123", min_size=1, max_size=6)


@st.composite
def clusters(draw: st.DrawFn, zones: int | None = None) -> tuple[Members, int, int]:
    """Members (1-12 nodes over 0-4 zones; 0 zones means every zone is ""), RF, partitions."""
    names = draw(st.lists(NAMES, min_size=1, max_size=12, unique=True))
    count = draw(st.integers(0, 4)) if zones is None else zones
    choices = [f"zone-{i}" for i in range(count)] or [""]
    members = {name: draw(st.sampled_from(choices)) for name in names}
    return members, draw(st.integers(1, 3)), draw(st.integers(16, 1024))


def effective_rf(members: Members, rf: int) -> int:
    return min(rf, len(members))


def assert_laws(placement: Placement, members: Members, rf: int, partitions: int) -> None:
    """Every rule plan() promises, checked from the outside."""
    r = effective_rf(members, rf)
    zones = len(set(members.values()))
    assert placement.partitions == partitions
    assert placement.replication_factor == rf
    slots: Counter[str] = Counter()
    owned: Counter[str] = Counter()
    for nodes in placement.replicas:
        assert len(nodes) == r
        assert len(set(nodes)) == r
        assert set(nodes) <= set(members)
        assert len({members[node] for node in nodes}) == min(r, zones)
        slots.update(nodes)
        owned[nodes[0]] += 1
    shares = fair_shares(members, replication_factor=rf, partitions=partitions)
    for node in members:
        fair = shares[node]
        assert math.floor(fair + EPS) - 1 <= slots[node] <= math.ceil(fair - EPS) + 1, node
        if r >= 2:
            assert partitions // len(members) <= owned[node] <= -(-partitions // len(members))


def zoneless(members: Members) -> bool:
    return len(set(members.values())) <= 1


def zone_rule_allows_even_shares(members: Members, r: int) -> bool:
    sizes = Counter(members.values()).values()
    if len(sizes) <= 1 or r <= 1:
        return True
    if len(sizes) >= r:
        return all(size * r <= len(members) for size in sizes)
    return all(size * r >= len(members) for size in sizes)


# -- plan: the laws --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(clusters())
def test_first_plan_keeps_every_law(cluster: tuple[Members, int, int]) -> None:
    members, rf, partitions = cluster
    placement = plan(None, members, replication_factor=rf, partitions=partitions)
    assert placement.epoch == 1
    assert_laws(placement, members, rf, partitions)
    # The stated band (assert_laws) is the promise; hypothesis found uneven zones where a
    # first plan lands 1.33 off fair, so "within 1 of fair" is not one.


def test_plan_does_not_depend_on_the_hash_seed() -> None:
    """Same output under other str hash seeds: no set or dict order leaks into the plan."""
    script = (
        "import sys; from supernode.cluster.placement import plan;"
        "m = {f'n{i}': f'z{i % 3}' for i in range(9)};"
        "sys.stdout.buffer.write(plan(None, m, replication_factor=3, partitions=64).to_bytes())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


@settings(max_examples=60, deadline=None)
@given(clusters())
def test_fair_shares_add_up_and_are_even_when_zones_allow(
    cluster: tuple[Members, int, int],
) -> None:
    members, rf, partitions = cluster
    r = effective_rf(members, rf)
    shares = fair_shares(members, replication_factor=rf, partitions=partitions)
    assert sum(shares.values()) == pytest.approx(partitions * r)
    per_zone: dict[str, float] = {}
    for node, zone in members.items():
        per_zone[zone] = per_zone.get(zone, 0.0) + shares[node]
        assert shares[node] <= partitions + EPS  # one replica per partition at most
    zones = len(per_zone)
    for total in per_zone.values():
        if zones >= r:
            assert total <= partitions + EPS
        else:
            assert total >= partitions - EPS
    if zone_rule_allows_even_shares(members, r):
        assert all(s == pytest.approx(partitions * r / len(members)) for s in shares.values())


@settings(max_examples=40, deadline=None)
@given(clusters(), st.randoms(use_true_random=False))
def test_plan_is_deterministic_and_a_fixed_point(
    cluster: tuple[Members, int, int], rng: random.Random
) -> None:
    members, rf, partitions = cluster
    first = plan(None, members, replication_factor=rf, partitions=partitions)
    shuffled = list(members.items())
    rng.shuffle(shuffled)
    again = plan(None, dict(shuffled), replication_factor=rf, partitions=partitions)
    assert again == first
    assert plan(first, members, replication_factor=rf, partitions=partitions) is first


def _join(cluster: tuple[Members, int, int], zone: str) -> tuple[int, int, float]:
    """Plan, add "joiner" in ``zone``, plan again; returns moves, its slots, its fair share."""
    members, rf, partitions = cluster
    before = plan(None, members, replication_factor=rf, partitions=partitions)
    joined = {**members, "joiner": zone}
    after = plan(before, joined, replication_factor=rf, partitions=partitions)
    assert after.epoch == 2
    assert_laws(after, joined, rf, partitions)
    if zoneless(joined):
        for old, new in zip(before.replicas, after.replicas, strict=True):
            assert set(new) - set(old) <= {"joiner"}
    fair = fair_shares(joined, replication_factor=rf, partitions=partitions)["joiner"]
    return after.moves_from(before), len(after.partitions_of("joiner")), fair


@settings(max_examples=60, deadline=None)
@given(clusters(zones=0))
def test_a_join_moves_only_replicas_to_the_joiner(cluster: tuple[Members, int, int]) -> None:
    moves, gained, fair = _join(cluster, "")
    assert moves == gained
    assert math.floor(fair + EPS) - 1 <= gained <= math.ceil(fair - EPS) + 1


@settings(max_examples=60, deadline=None)
@given(clusters(zones=3), st.sampled_from(["zone-0", "zone-1", "zone-2", "zone-new"]))
def test_a_join_with_zones_moves_at_most_twice_its_share(
    cluster: tuple[Members, int, int], zone: str
) -> None:
    """A zone's share changes with its size, so a few replicas may move between others."""
    moves, gained, _ = _join(cluster, zone)
    assert gained <= moves <= 2 * gained


def _leave(cluster: tuple[Members, int, int], pick: int) -> tuple[int, int]:
    """Plan, remove one member, plan again; returns moves and the replicas to rebuild."""
    members, rf, partitions = cluster
    if len(members) < 2:
        members = {**members, "second": next(iter(members.values()))}
    before = plan(None, members, replication_factor=rf, partitions=partitions)
    leaver = sorted(members)[pick % len(members)]
    left = {name: zone for name, zone in members.items() if name != leaver}
    after = plan(before, left, replication_factor=rf, partitions=partitions)
    assert after.epoch == 2
    assert_laws(after, left, rf, partitions)
    same_rf = effective_rf(left, rf) == effective_rf(members, rf)
    if zoneless(members):
        for old, new in zip(before.replicas, after.replicas, strict=True):
            assert set(old) - set(new) <= {leaver}
            assert len(set(new) - set(old)) == (len(set(old) - set(new)) if same_rf else 0)
    return after.moves_from(before), len(before.partitions_of(leaver)) if same_rf else 0


@settings(max_examples=60, deadline=None)
@given(clusters(zones=0), st.integers(0, 11))
def test_a_leave_moves_only_the_leavers_replicas(
    cluster: tuple[Members, int, int], pick: int
) -> None:
    moves, rebuilt = _leave(cluster, pick)
    assert moves == rebuilt


@settings(max_examples=60, deadline=None)
@given(clusters(zones=3), st.integers(0, 11))
def test_a_leave_with_zones_moves_at_most_twice_its_replicas(
    cluster: tuple[Members, int, int], pick: int
) -> None:
    moves, rebuilt = _leave(cluster, pick)
    assert rebuilt <= moves <= 2 * rebuilt


@settings(max_examples=30, deadline=None)
@given(clusters(), st.lists(st.tuples(st.booleans(), st.integers(0, 11)), max_size=5))
def test_laws_hold_through_churn(
    cluster: tuple[Members, int, int], steps: list[tuple[bool, int]]
) -> None:
    """Plans built on plans, not only on fresh ones, keep every law."""
    members, rf, partitions = cluster
    zones = sorted(set(members.values()))
    placement = plan(None, members, replication_factor=rf, partitions=partitions)
    for i, (join, pick) in enumerate(steps):
        if join or len(members) == 1:
            members = {**members, f"new-{i}": zones[pick % len(zones)]}
        else:
            del members[sorted(members)[pick % len(members)]]
        following = plan(placement, members, replication_factor=rf, partitions=partitions)
        assert following.epoch == placement.epoch + 1
        assert_laws(following, members, rf, partitions)
        placement = following


def test_nodes_without_a_zone_count_as_one_zone() -> None:
    members = {"a": "", "b": "", "c": "zone-1"}
    placement = plan(None, members, replication_factor=2, partitions=64)
    assert all("c" in nodes for nodes in placement.replicas)
    assert_laws(placement, members, 2, 64)


def test_a_node_that_changes_zone_is_respread() -> None:
    members = {f"n{i}": f"zone-{i % 3}" for i in range(6)}
    before = plan(None, members, replication_factor=3, partitions=128)
    moved = {**members, "n0": "zone-1"}  # zone-0 now has one node, zone-1 three
    after = plan(before, moved, replication_factor=3, partitions=128)
    assert_laws(after, moved, 3, 128)
    assert after.moves_from(before) > 0


@pytest.mark.parametrize(("old_rf", "new_rf"), [(2, 3), (3, 2), (1, 3)])
def test_a_change_of_rf_keeps_replicas_where_it_can(old_rf: int, new_rf: int) -> None:
    members = {f"n{i:02d}": "" for i in range(8)}
    before = plan(None, members, replication_factor=old_rf, partitions=256)
    after = plan(before, members, replication_factor=new_rf, partitions=256)
    assert after.epoch == 2
    assert_laws(after, members, new_rf, 256)
    kept = sum(len(set(a) & set(b)) for a, b in zip(before.replicas, after.replicas, strict=True))
    assert kept == 256 * min(old_rf, new_rf)


def test_fewer_members_than_rf_puts_every_node_in_every_partition() -> None:
    placement = plan(None, {"a": "", "b": ""}, replication_factor=3, partitions=32)
    assert all(set(nodes) == {"a", "b"} for nodes in placement.replicas)
    assert sorted(Counter(nodes[0] for nodes in placement.replicas).values()) == [16, 16]


def test_a_hundred_nodes_plan_balanced() -> None:
    members = {f"node-{i:03d}": f"zone-{i % 3}" for i in range(100)}
    placement = plan(None, members, replication_factor=3)
    assert_laws(placement, members, 3, 1024)
    joined = plan(placement, {**members, "node-new": "zone-1"}, replication_factor=3)
    assert_laws(joined, {**members, "node-new": "zone-1"}, 3, 1024)
    assert joined.moves_from(placement) == len(joined.partitions_of("node-new"))


# -- plan: epochs and refusals ---------------------------------------------------------


def test_epoch_rises_by_one_on_change_and_stays_otherwise() -> None:
    members = {"a": "", "b": "", "c": ""}
    first = plan(None, members, replication_factor=2, partitions=16)
    assert first.epoch == 1
    assert plan(first, dict(members), replication_factor=2, partitions=16) is first
    second = plan(first, {**members, "d": ""}, replication_factor=2, partitions=16)
    assert second.epoch == 2
    assert plan(second, {**members, "d": ""}, replication_factor=2, partitions=16) is second


def test_a_new_rf_with_the_same_replicas_is_a_new_epoch() -> None:
    first = plan(None, {"a": "", "b": ""}, replication_factor=2, partitions=16)
    second = plan(first, {"a": "", "b": ""}, replication_factor=3, partitions=16)
    assert second.replicas == first.replicas
    assert (second.epoch, second.replication_factor) == (2, 3)


def test_a_new_partition_count_replans_and_moves_everything() -> None:
    members = {"a": "", "b": "", "c": ""}
    first = plan(None, members, replication_factor=2, partitions=16)
    second = plan(first, members, replication_factor=2, partitions=32)
    assert (second.epoch, second.partitions) == (2, 32)
    assert second.moves_from(first) == 64


@pytest.mark.parametrize(
    ("members", "rf", "partitions", "message"),
    [
        ({}, 3, 16, "members: empty"),
        ({"a": ""}, 0, 16, "replication_factor"),
        ({"a": ""}, 1, 0, "partitions"),
        ({"": "zone"}, 1, 16, "members"),
        ({"a": None}, 1, 16, "members"),
        ({"a": ""}, "3", 16, "replication_factor"),
    ],
)
def test_plan_refuses_bad_input(
    members: dict[str, object], rf: object, partitions: int, message: str
) -> None:
    with pytest.raises(PlacementError, match=message):
        plan(None, members, replication_factor=rf, partitions=partitions)  # type: ignore[arg-type]


# -- the Placement value ---------------------------------------------------------------

SMALL = Placement(7, 2, (("a", "b"), ("b", "c"), ("c", "a"), ("a", "c")))


def test_accessors() -> None:
    assert SMALL.partitions == 4
    assert SMALL.replicas_of(1) == ("b", "c")
    assert SMALL.partitions_of("a") == [0, 2, 3]
    assert SMALL.owned_by("a") == [0, 3]
    assert SMALL.owned_by("b") == [1]
    assert SMALL.nodes() == frozenset({"a", "b", "c"})
    p = partition_of("alice", 4)
    assert SMALL.replicas_of_handle("alice") == SMALL.replicas[p]
    assert SMALL.owner_of_handle("alice") == SMALL.replicas[p][0]


def test_moves_count_new_replicas_not_owner_changes() -> None:
    swapped = Placement(8, 2, (("b", "a"), ("b", "c"), ("c", "a"), ("a", "b")))
    assert swapped.moves_from(SMALL) == 1  # partition 3 gained b; partition 0 only swapped


@pytest.mark.parametrize(
    ("epoch", "rf", "replicas", "message"),
    [
        (0, 2, (("a", "b"),), "epoch"),
        (True, 2, (("a", "b"),), "epoch"),
        (1, 0, (("a",),), "replication_factor"),
        (1, 2, (), "non-empty"),
        (1, 2, (("a", "a"),), "twice"),
        (1, 2, (("a", "b", "c"),), "RF 2"),
        (1, 1, (("",),), "node names"),
        (1, 1, (["a"],), "node names"),
    ],
)
def test_placement_refuses_inconsistency(
    epoch: int, rf: int, replicas: tuple[tuple[str, ...], ...], message: str
) -> None:
    with pytest.raises(PlacementError, match=message):
        Placement(epoch, rf, replicas)


# -- encoding --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(clusters(), st.integers(1, 2**40))
def test_bytes_round_trip(cluster: tuple[Members, int, int], epoch: int) -> None:
    members, rf, partitions = cluster
    planned = plan(None, members, replication_factor=rf, partitions=partitions)
    placement = Placement(epoch, planned.replication_factor, planned.replicas)
    raw = placement.to_bytes()
    assert Placement.from_bytes(raw) == placement
    assert json.loads(raw)["format"] == FORMAT


def test_encoding_is_compact() -> None:
    members = {f"node-{i:03d}": "" for i in range(100)}
    raw = plan(None, members, replication_factor=3).to_bytes()
    assert len(raw) < 16_000  # about 10 bytes per partition


def _document(**changes: object) -> bytes:
    document = json.loads(SMALL.to_bytes())
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[1, 2]", "JSON object"),
        (_document(format=3), "format 3"),
        (_document(format=1), "fields"),  # format 1 had neither moves nor changed
        (_document(format="1"), "format"),
        (_document(format=True), "format"),
        (_document(format=...), "format None"),
        (_document(epoch=...), "fields"),
        (_document(extra=1), "fields"),
        (_document(partitions=5), "partitions 5 but 4 rows"),
        (_document(partitions=True), "partitions"),
        (_document(replicas=[[0, 1], [1, 2], [2, 0], [0, 0]]), "twice"),
        (_document(replicas=[[0, 1], [1, 2], [2, 0], [0, 9]]), "outside the node list"),
        (_document(replicas=[[0, 1], [1, 2], [2, 0], [0, True]]), "outside the node list"),
        (_document(replicas=[[0, 1], [1, 2], [2, 0], []]), "0 replicas"),
        (_document(moves={"4": [0, 1]}), "move '4'"),
        (_document(moves={"x": [0, 1]}), "move 'x'"),
        (_document(moves={"0": [0, 1]}), "moves to where it is"),
        (_document(moves={"0": [0, 0]}), "1-2 nodes"),
        (_document(moves={"0": [0, 1, 2]}), "1-2 nodes"),
        (_document(moves=[]), "moves must be"),
        (_document(changed=[1, 2]), "2 changed epochs for 4"),
        (_document(changed=[1, 2, 3, 8]), "changed epochs must lie in 1-7"),
        (_document(changed="1"), "changed must be"),
        (_document(replicas=[[0, 1], [1, 2], [2, 0], "ab"]), "list of lists"),
        (_document(replication_factor=1), "RF 1"),
        (_document(nodes=["a", "b", "c", "d"]), "sorted names"),
        (_document(nodes=["c", "b", "a"]), "sorted names"),
        (_document(nodes=["a", "b", 3]), "list of names"),
        (_document(epoch=0), "epoch"),
        (_document(replicas=[], partitions=0, nodes=[]), "non-empty"),
    ],
)
def test_from_bytes_refuses_garbage(raw: bytes, message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        Placement.from_bytes(raw)


def test_from_bytes_refuses_text() -> None:
    with pytest.raises(PlacementError, match="expected bytes"):
        Placement.from_bytes(SMALL.to_bytes().decode())  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_from_bytes_raises_only_placement_errors(data: st.DataObject) -> None:
    raw = SMALL.to_bytes()
    at = data.draw(st.integers(0, len(raw)))
    mutated = raw[:at] + data.draw(st.binary(max_size=4)) + raw[at + data.draw(st.integers(0, 3)) :]
    try:
        decoded = Placement.from_bytes(mutated)
    except PlacementError:
        return
    assert Placement.from_bytes(decoded.to_bytes()) == decoded


# -- partition_of ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handle", "partitions", "expected"),
    [
        ("alice", 1024, 649),
        ("bob", 1024, 146),
        ("carol", 1024, 865),
        ("x" * 32, 1024, 209),
        ("a.b-c_d", 7, 2),
        ("0123", 1 << 20, 713600),
    ],
)
def test_partition_of_is_pinned(handle: str, partitions: int, expected: int) -> None:
    """Fixed values: a change of hash would move every handle of a running cluster."""
    assert partition_of(handle, partitions) == expected


@given(st.text(max_size=40), st.integers(1, 5000))
def test_partition_of_is_in_range(handle: str, partitions: int) -> None:
    assert 0 <= partition_of(handle, partitions) < partitions


def test_partition_of_spreads_handles() -> None:
    counts = Counter(partition_of(f"user{i}", 16) for i in range(16_000))
    assert len(counts) == 16
    assert max(counts.values()) < 1.2 * 1000


def test_partition_of_refuses_no_partitions() -> None:
    with pytest.raises(PlacementError, match="partitions"):
        partition_of("alice", 0)
