"""The controller's moves: safe at every step, bounded in flight, and always arriving."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.cluster.moves import Streamed, advance, moving_to, streamed_for
from supernode.cluster.placement import Placement, PlacementError, plan

NODES = [f"n{i}" for i in range(7)]


@st.composite
def transitions(draw: st.DrawFn) -> tuple[Placement, Placement, int]:
    """A placement over some nodes and the plan for a changed membership."""
    partitions = draw(st.integers(1, 48))
    rf = draw(st.integers(1, 3))
    before = draw(st.sets(st.sampled_from(NODES), min_size=1, max_size=5))
    after = draw(st.sets(st.sampled_from(NODES), min_size=1, max_size=5))
    first = plan(None, dict.fromkeys(before, ""), replication_factor=rf, partitions=partitions)
    second = plan(first, dict.fromkeys(after, ""), replication_factor=rf, partitions=partitions)
    return first, second, draw(st.integers(1, 16))


def everyone_streamed(placement: Placement) -> Streamed:
    """Every added node has streamed every partition it is receiving."""
    return {node: moving_to(placement, node) for node in placement.involved()}


def write_targets(placement: Placement, p: int) -> frozenset[frozenset[str]]:
    return frozenset(frozenset(s) for s in placement.write_sets(p))


@settings(max_examples=150, deadline=None)
@given(transitions(), st.data())
def test_every_step_is_safe_and_bounded(
    transition: tuple[Placement, Placement, int], data: st.DataObject
) -> None:
    current, destination, max_moving = transition
    for _ in range(4 * current.partitions + 8):
        # some added nodes have streamed some of their partitions
        streamed: dict[str, dict[int, int]] = {}
        for node in current.involved():
            wanted = moving_to(current, node)
            done = data.draw(st.sets(st.sampled_from(sorted(wanted)))) if wanted else set()
            streamed[node] = {p: wanted[p] for p in done}
        following = advance(current, destination.replicas, streamed, max_moving=max_moving)
        if following is current:
            assert not any(streamed_for(current, p, streamed) for p in current.moves)
            break
        assert following.epoch == current.epoch + 1
        assert len(following.moves) <= max(max_moving, len(current.moves))
        for p in range(current.partitions):
            before, after = current.replicas[p], following.replicas[p]
            if set(after) - set(before):  # the read set gained a node: it must be filled
                assert set(current.moves.get(p, ())) == set(after)
                assert streamed_for(current, p, streamed)
            assert following.changed_at(p) >= current.changed_at(p)
            if write_targets(following, p) != write_targets(current, p):
                assert following.changed_at(p) == following.epoch
        Placement.from_bytes(following.to_bytes())  # and it encodes
        current = following


@settings(max_examples=150, deadline=None)
@given(transitions())
def test_moves_arrive_when_nodes_stream(transition: tuple[Placement, Placement, int]) -> None:
    current, destination, max_moving = transition
    differing = sum(a != b for a, b in zip(current.replicas, destination.replicas, strict=True))
    for _ in range(2 * math.ceil(differing / max_moving) + 2):
        current = advance(
            current, destination.replicas, everyone_streamed(current), max_moving=max_moving
        )
    assert current.replicas == destination.replicas
    assert current.settled


def test_nothing_to_do_is_the_same_placement() -> None:
    placement = plan(None, {"a": "", "b": ""}, replication_factor=2, partitions=8)
    assert advance(placement, placement.replicas, {}, max_moving=4) is placement


def test_a_join_moves_at_most_max_moving_and_waits_for_the_stream() -> None:
    before = plan(None, {"a": "", "b": "", "c": ""}, replication_factor=3, partitions=16)
    after = plan(before, {"a": "", "b": "", "c": "", "d": ""}, replication_factor=3, partitions=16)
    step = advance(before, after.replicas, {}, max_moving=4)
    assert len(step.moves) == 4
    assert step.nodes() == {"a", "b", "c"}  # reads stay where the data is
    assert step.involved() == {"a", "b", "c", "d"}
    p = min(step.moves)
    assert step.write_sets(p) == (before.replicas[p], after.replicas[p])
    assert step.incoming(p) == ("d",)
    assert moving_to(step, "d") == dict.fromkeys(sorted(step.moves), step.epoch)
    # nobody streamed: nothing flips, nothing more starts
    assert advance(step, after.replicas, {}, max_moving=4) is step
    # a report for an older move of the partition does not count
    stale = {"d": {p: step.epoch - 1}}
    assert advance(step, after.replicas, stale, max_moving=4) is step
    flipped = advance(step, after.replicas, {"d": {p: step.epoch}}, max_moving=4)
    assert flipped.replicas[p] == after.replicas[p]
    assert p not in flipped.moves and len(flipped.moves) == 4  # the freed slot is taken
    assert flipped.changed_at(p) == flipped.epoch


def test_a_redirected_move_starts_again() -> None:
    members = {"a": "", "b": "", "c": ""}
    before = plan(None, members, replication_factor=2, partitions=6)
    joined = plan(before, {**members, "d": ""}, replication_factor=2, partitions=6)
    step = advance(before, joined.replicas, {}, max_moving=6)
    assert step.moves
    # d goes away before it finished: its moves are called off
    back = advance(step, before.replicas, {}, max_moving=6)
    assert back.settled and back.replicas == before.replicas
    for p in step.moves:
        assert back.changed_at(p) == back.epoch


def test_losing_a_replica_needs_no_stream() -> None:
    before = plan(None, {"a": "", "b": "", "c": ""}, replication_factor=3, partitions=4)
    after = plan(before, {"a": "", "b": ""}, replication_factor=3, partitions=4)
    step = advance(before, after.replicas, {}, max_moving=1)
    assert step.replicas == after.replicas and step.settled


def test_format_one_documents_still_read() -> None:
    placement = Placement(3, 2, (("a", "b"), ("b", "a")))
    document = json.loads(placement.to_bytes())
    del document["moves"], document["changed"]
    document["format"] = 1
    old = Placement.from_bytes(json.dumps(document).encode())
    assert old == placement and old.changed_at(1) == 3


def test_moves_round_trip_and_are_checked() -> None:
    placement = Placement(5, 2, (("a", "b"), ("b", "c")), {1: ("c", "d")}, (1, 5))
    assert Placement.from_bytes(placement.to_bytes()) == placement
    assert placement.destination() == (("a", "b"), ("c", "d"))
    assert placement.eventual().replicas == placement.destination()
    with pytest.raises(PlacementError, match="outside"):
        Placement(5, 2, (("a", "b"),), {1: ("c",)})
    with pytest.raises(PlacementError, match="changed epochs must lie"):
        Placement(5, 2, (("a", "b"),), {}, (6,))
