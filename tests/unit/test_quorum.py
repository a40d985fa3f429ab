"""Quorum writes and read repair, as pure arithmetic (supernode/cluster/quorum.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.protocol.records import supersedes
from supernode.cluster.quorum import Decision, QuorumWrite, Reply, live, merge_reads
from supernode.directory.presence import DeviceWrite

NODES = ("a", "b", "c")
replies = st.lists(st.sampled_from(list(Reply)), min_size=3, max_size=3)


def test_two_of_three_acknowledge_and_the_third_gets_a_hint() -> None:
    write = QuorumWrite(NODES, 2)
    assert write.record("a", Reply.APPLIED) is Decision.PENDING
    assert write.record("b", Reply.HELD) is Decision.ACKNOWLEDGED
    assert write.record("c", Reply.UNREACHABLE) is Decision.ACKNOWLEDGED
    assert write.need_hints == ["c"]


def test_refusals_that_leave_no_quorum_refuse_with_the_replicas_reason() -> None:
    write = QuorumWrite(NODES, 2)
    reason = ValueError("record.seq: 3 is not greater than the stored 5")
    write.record("a", Reply.REFUSED, reason)
    assert write.record("b", Reply.REFUSED, ValueError("later")) is Decision.REFUSED
    assert write.refusal is reason


def test_nobody_reachable_is_unavailable_and_a_timeout_counts_as_unreachable() -> None:
    write = QuorumWrite(NODES, 2)
    write.record("a", Reply.APPLIED)
    write.timed_out()
    assert write.decision is Decision.UNAVAILABLE and write.need_hints == ["b", "c"]


def test_bad_quorums_and_strangers_are_refused() -> None:
    with pytest.raises(ValueError):
        QuorumWrite(NODES, 4)
    with pytest.raises(ValueError):
        QuorumWrite(("a", "a"), 1)
    with pytest.raises(ValueError):
        QuorumWrite(NODES, 2).record("z", Reply.APPLIED)


@given(replies, st.permutations(NODES), st.integers(min_value=1, max_value=3))
def test_the_decision_depends_on_the_replies_not_their_order(
    kinds: list[Reply], order: list[str], w: int
) -> None:
    given_order, shuffled = QuorumWrite(NODES, w), QuorumWrite(NODES, w)
    decisions = [given_order.record(node, kind) for node, kind in zip(NODES, kinds, strict=True)]
    by_node = dict(zip(NODES, kinds, strict=True))
    for node in order:
        shuffled.record(node, by_node[node])
    assert decisions[-1] is shuffled.decision is not Decision.PENDING
    acks = sum(k in (Reply.APPLIED, Reply.HELD) for k in kinds)
    assert (shuffled.decision is Decision.ACKNOWLEDGED) == (acks >= w)
    if Decision.ACKNOWLEDGED in decisions:  # once acknowledged, always acknowledged
        first = decisions.index(Decision.ACKNOWLEDGED)
        assert all(d is Decision.ACKNOWLEDGED for d in decisions[first:])
    assert shuffled.need_hints == [n for n in NODES if by_node[n] is Reply.UNREACHABLE]


versions = st.builds(
    lambda device, seq, dead, expires: DeviceWrite(
        "alice", device, seq, expires, b"" if dead else f"{device}{seq}{expires}".encode()
    ),
    st.sampled_from(["phone", "laptop"]),
    st.integers(min_value=1, max_value=4),
    st.booleans(),
    st.integers(min_value=1, max_value=5),
)
held = st.dictionaries(st.sampled_from(NODES), st.lists(versions, max_size=4), min_size=1)


@given(held)
def test_read_repair_makes_every_replica_hold_the_winners(
    state: dict[str, list[DeviceWrite]],
) -> None:
    merged = merge_reads(state)
    for device_id, winner in merged.winners.items():
        for versions_of_node in state.values():
            for version in versions_of_node:
                if version.device_id == device_id:
                    assert not supersedes(version.version, winner.version)
    for node, versions_of_node in state.items():
        repaired = {v.device_id: v for v in versions_of_node}
        for fix in merged.repairs.get(node, []):
            current = repaired.get(fix.device_id)
            assert supersedes(fix.version, None if current is None else current.version)
            repaired[fix.device_id] = fix
        final = {d: v for d, v in repaired.items() if d in merged.winners}
        assert final == merged.winners or {d: v.version for d, v in final.items()} == {
            d: v.version for d, v in merged.winners.items()
        }
    again = merge_reads({n: list(reversed(v)) for n, v in reversed(list(state.items()))})
    assert {d: v.version for d, v in again.winners.items()} == {
        d: v.version for d, v in merged.winners.items()
    }


def test_a_lookup_serves_only_live_unexpired_winners() -> None:
    winners = {
        "a": DeviceWrite("h", "a", 1, 10, b"x"),
        "b": DeviceWrite("h", "b", 2, 99, b""),
        "c": DeviceWrite("h", "c", 1, 99, b"y"),
    }
    assert [w.device_id for w in live(winners, now_ms=50)] == ["c"]


def test_a_moving_partition_needs_a_quorum_in_both_sets() -> None:
    write = QuorumWrite(("a", "b", "c"), 2, moving_to=("d", "b", "c"))
    assert write.targets == ("a", "b", "c", "d")
    write.record("a", Reply.APPLIED)
    assert write.record("d", Reply.APPLIED) is Decision.PENDING  # one in each: not yet
    assert write.record("b", Reply.APPLIED) is Decision.ACKNOWLEDGED
    write.timed_out()
    assert write.need_hints == ["c"]


def test_a_moving_partition_is_unavailable_when_the_new_set_cannot_take_it() -> None:
    write = QuorumWrite(("a", "b", "c"), 2, moving_to=("d", "e", "c"))
    write.record("a", Reply.APPLIED)
    write.record("b", Reply.APPLIED)
    write.record("d", Reply.UNREACHABLE)
    assert write.record("e", Reply.STALE) is Decision.UNAVAILABLE
    assert write.stale and write.need_hints == ["d"]


@given(st.lists(st.sampled_from(list(Reply)), min_size=4, max_size=4))
def test_acknowledged_means_a_quorum_of_each_set(kinds: list[Reply]) -> None:
    old, new = ("a", "b", "c"), ("d", "b", "c")
    write = QuorumWrite(old, 2, moving_to=new)
    for node, kind in zip(write.targets, kinds, strict=True):
        write.record(node, kind)
    holds = {n for n, r in write.replies.items() if r in (Reply.APPLIED, Reply.HELD)}
    both = len(holds & set(old)) >= 2 and len(holds & set(new)) >= 2
    assert (write.decision is Decision.ACKNOWLEDGED) == both
    assert write.decision is not Decision.PENDING  # every target answered
