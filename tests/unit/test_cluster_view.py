"""The cluster's pure state: the mirrored view, its persistence, and who is planned over."""

import pytest

from supernode.cluster.etcd import EventKind, WatchEvent
from supernode.cluster.keys import Keys, LayoutError, MemberInfo, NodeInfo
from supernode.cluster.membership import members_to_plan
from supernode.cluster.placement import plan
from supernode.cluster.view import ClusterView
from supernode.config import ClusterSettings
from supernode.revocations import Revocations, account_revocation, session_revocation

KEYS = Keys("/sn")
A, B = "127.0.0.1:7701", "127.0.0.1:7702"
PLACEMENT = plan(None, {A: "", B: ""}, replication_factor=1, partitions=8)


def put(key: bytes, value: bytes, revision: int = 1) -> WatchEvent:
    return WatchEvent(EventKind.PUT, key, value, revision)


def delete(key: bytes, revision: int = 1) -> WatchEvent:
    return WatchEvent(EventKind.DELETE, key, b"", revision)


def test_events_build_the_view_and_report_what_changed() -> None:
    view = ClusterView()
    applied = view.apply(
        KEYS,
        [
            put(KEYS.node(A), NodeInfo(A, "z1").to_bytes()),
            put(KEYS.member(A), MemberInfo(A, "z1", "0.1.0").to_bytes()),
            put(KEYS.placement, PLACEMENT.to_bytes()),
            put(KEYS.controller, A.encode()),
            put(KEYS.token_secret, b"s" * 32),
            put(KEYS.account("alice"), b"account-bytes"),
        ],
        revision=7,
    )
    assert applied.members_changed and applied.placement_changed and not applied.ignored
    assert [(a.handle, a.account) for a in applied.accounts] == [("alice", b"account-bytes")]
    assert view.placement == PLACEMENT and view.controller == A and view.revision == 7
    assert view.members[A].zone == "z1" and view.token_secret == b"s" * 32
    later = view.apply(KEYS, [delete(KEYS.member(A)), delete(KEYS.controller)], revision=9)
    assert later.members_changed and not later.placement_changed
    assert A not in view.members and A in view.nodes and view.controller == ""
    assert view.address_of(A) == A  # from its node record once its member key is gone


def test_foreign_values_are_ignored_and_named_not_fatal() -> None:
    view = ClusterView()
    applied = view.apply(
        KEYS,
        [
            put(KEYS.member(A), b"not json"),
            put(KEYS.placement, b"{}"),
            put(b"/sn/unknown", b"x"),
            put(b"/other/members/x", b"x"),
        ],
        revision=3,
    )
    assert len(applied.ignored) == 2 and view.members == {} and view.placement is None
    assert view.revision == 3


def test_the_view_survives_a_restart_through_the_store() -> None:
    view = ClusterView(
        members={A: MemberInfo(A, mirror_revision=4)},
        nodes={A: NodeInfo(A), B: NodeInfo(B, "z2", 5)},
        placement=PLACEMENT,
        controller=B,
        token_secret=b"k" * 32,
        revision=11,
    )
    assert ClusterView.from_bytes(view.to_bytes()) == view
    with pytest.raises(LayoutError, match="unreadable"):
        ClusterView.from_bytes(b'{"revision": 1}')


def test_a_down_node_is_planned_over_until_its_grace_ends() -> None:
    view = ClusterView(nodes={A: NodeInfo(A, "z1"), B: NodeInfo(B)}, members={A: MemberInfo(A)})
    down: dict[str, float] = {}
    assert members_to_plan(view, down, now=100.0, grace_s=30) == {A: "z1", B: ""}
    assert members_to_plan(view, down, now=129.9, grace_s=30) == {A: "z1", B: ""}
    assert members_to_plan(view, down, now=130.0, grace_s=30) == {A: "z1"}
    view.members[B] = MemberInfo(B)  # back: planned again, and its clock is reset
    assert members_to_plan(view, down, now=131.0, grace_s=30) == {A: "z1", B: ""}
    assert down == {}


def test_keys_name_what_is_under_a_collection() -> None:
    assert KEYS.name_under(KEYS.member(A), KEYS.members) == A
    assert KEYS.name_under(KEYS.members, KEYS.members) is None
    assert KEYS.name_under(KEYS.node(A), KEYS.members) is None
    for raw in (b"", b"[]", b'{"zone": "x"}'):
        with pytest.raises(LayoutError):
            MemberInfo.from_bytes(raw)
        with pytest.raises(LayoutError):
            NodeInfo.from_bytes(raw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"partitions": 0}, "partitions"),
        ({"replication_factor": 0}, "replication_factor"),
        ({"member_ttl_seconds": 1}, "member_ttl_seconds"),
        ({"etcd_timeout_seconds": 0}, "etcd_timeout_seconds"),
        ({"etcd_prefix": "sn"}, "etcd_prefix"),
        ({"etcd_prefix": "/sn/"}, "etcd_prefix"),
        ({"replication_factor": 3, "write_quorum": 4}, "write_quorum"),
        ({"max_hints_per_node": 0}, "max_hints_per_node"),
    ],
)
def test_cluster_settings_refuse_what_cannot_work(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterSettings(**fields)  # type: ignore[arg-type]


def test_writes_are_acknowledged_by_a_majority_unless_told() -> None:
    assert ClusterSettings().writes_acknowledged_after == 2
    assert ClusterSettings(replication_factor=1).writes_acknowledged_after == 1
    assert ClusterSettings(replication_factor=5).writes_acknowledged_after == 3
    assert ClusterSettings(write_quorum=3).writes_acknowledged_after == 3


def test_no_endpoints_means_a_node_alone() -> None:
    assert not ClusterSettings().enabled
    assert ClusterSettings(etcd_endpoints=" a:1, b:2 ,").endpoints == ["a:1", "b:2"]


def test_a_view_replaced_in_place_holds_the_new_contents_only() -> None:
    held = ClusterView()  # what every component holds a reference to
    held.apply(KEYS, [put(KEYS.member(A), MemberInfo(A, "z1", "0.1.0").to_bytes())], revision=3)
    fresh = ClusterView()
    fresh.apply(KEYS, [put(KEYS.member(B), MemberInfo(B, "z2", "0.1.0").to_bytes())], revision=5)
    held.replace_with(fresh)
    assert set(held.members) == {B} and held.revision == 5 and held == fresh


def test_revocations_are_mirrored_and_reported_but_not_in_the_persisted_view() -> None:
    """Each revocation is a key of its own, put and (its lease ended) deleted; the view
    reports the change for the token checks and the store, and leaves them out of its
    persisted form, so one revocation never rewrites the others."""
    view = ClusterView()
    session = session_revocation(b"\x05" * 16, until_ms=10)
    account = account_revocation("alice", cutoff_ms=3, until_ms=20)
    applied = view.apply(
        KEYS,
        [put(KEYS.revocation(r.name), r.value) for r in (session, account)],
        revision=3,
    )
    assert applied.revoked == {session.name: session.value, account.name: account.value}
    assert not applied.structural
    revocations = Revocations()
    revocations.update(applied.revoked)
    assert revocations.covers("bob", b"\x05" * 16, 0) and revocations.covers("alice", b"", 3)
    gone = view.apply(KEYS, [delete(KEYS.revocation(session.name))], revision=4)
    assert gone.revoked == {session.name: None} and view.revoked == {account.name: account.value}
    revocations.update(gone.revoked)
    assert not revocations.covers("bob", b"\x05" * 16, 0) and len(revocations) == 1
    assert ClusterView.from_bytes(view.to_bytes()).revoked == {}
