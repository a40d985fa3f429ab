import pytest

from supernode.directory.presence import Change, DeviceChanged
from supernode.directory.watch import WatchHub
from supernode.errors import InvalidArgument, ResourceExhausted


def hub(**overrides: int) -> WatchHub:
    settings = {"history": 5, "queue_limit": 3, "max_handles": 2, "max_watches_per_session": 2}
    settings.update(overrides)
    return WatchHub(clock=lambda: 0.0, epoch="e1", **settings)


def change(h: WatchHub, handle: str, change: Change = Change.ONLINE) -> None:
    h.device_changed(
        DeviceChanged(handle, "d", change, b"dev" if change is not Change.EXPIRED else None)
    )


def test_fresh_watch_starts_from_a_snapshot_position() -> None:
    h = hub()
    change(h, "alice")
    start = h.subscribe(b"s", ["alice"], lambda: None)
    assert not start.resumed and start.revision == 1 and start.backlog == []


def test_changes_reach_only_watchers_of_the_handle_in_order() -> None:
    h = hub()
    woken: list[str] = []
    a = h.subscribe(b"s", ["alice"], lambda: woken.append("a")).subscription
    b = h.subscribe(b"t", ["bob"], lambda: woken.append("b")).subscription
    change(h, "alice")
    change(h, "alice", Change.UPDATED)
    change(h, "carol")
    assert [(e.revision, e.change) for e in a.drain()] == [(1, Change.ONLINE), (2, Change.UPDATED)]
    assert b.drain() == [] and woken == ["a", "a"]


def test_resume_delivers_exactly_the_missed_changes() -> None:
    h = hub()
    change(h, "alice")
    change(h, "bob")
    change(h, "alice", Change.EXPIRED)
    start = h.subscribe(b"s", ["alice"], lambda: None, epoch="e1", revision=1)
    assert start.resumed
    assert [(e.revision, e.change) for e in start.backlog] == [(3, Change.EXPIRED)]


@pytest.mark.parametrize(("epoch", "revision"), [("old-epoch", 1), ("e1", 99), ("", 0), ("e1", 0)])
def test_unknown_or_too_old_positions_get_a_snapshot(epoch: str, revision: int) -> None:
    h = hub(history=2)
    for _ in range(4):
        change(h, "alice")  # history now holds revisions 3 and 4
    start = h.subscribe(b"s", ["alice"], lambda: None, epoch=epoch, revision=revision)
    assert not start.resumed and start.revision == 4


def test_oldest_resumable_position_is_just_before_the_history() -> None:
    h = hub(history=2)
    for _ in range(4):
        change(h, "alice")
    assert h.subscribe(b"s", ["alice"], lambda: None, epoch="e1", revision=2).resumed
    assert h.subscribe(b"t", ["alice"], lambda: None, epoch="e1", revision=4).resumed


def test_slow_consumer_overflows_instead_of_growing() -> None:
    h = hub(queue_limit=3)
    sub = h.subscribe(b"s", ["alice"], lambda: None).subscription
    for _ in range(4):
        change(h, "alice")
    assert sub.overflowed and sub.drain() == []


def test_limits() -> None:
    h = hub(max_handles=2, max_watches_per_session=2)
    with pytest.raises(InvalidArgument, match="at most 2 per watch"):
        h.subscribe(b"s", ["a", "b", "c"], lambda: None)
    with pytest.raises(InvalidArgument, match="at least one"):
        h.subscribe(b"s", [], lambda: None)
    first = h.subscribe(b"s", ["a"], lambda: None).subscription
    h.subscribe(b"s", ["a"], lambda: None)
    with pytest.raises(ResourceExhausted, match="already has 2 watches"):
        h.subscribe(b"s", ["a"], lambda: None)
    h.unsubscribe(first)
    h.subscribe(b"s", ["a"], lambda: None)
    assert h.watchers == 2


def test_close_wakes_everyone() -> None:
    h = hub()
    woken: list[int] = []
    h.subscribe(b"s", ["a"], lambda: woken.append(1))
    h.subscribe(b"t", ["b"], lambda: woken.append(2))
    h.close()
    assert h.closed and sorted(woken) == [1, 2]


def test_the_same_change_from_several_replicas_is_told_once() -> None:
    h = hub()
    a = h.subscribe(b"s", ["alice"], lambda: None).subscription
    for _replica in range(3):
        h.device_changed(DeviceChanged("alice", "d", Change.ONLINE, b"dev", seq=4))
    h.device_changed(DeviceChanged("alice", "d", Change.UPDATED, b"dev", seq=4))  # a laggard
    for change in (Change.UNREGISTERED, Change.EXPIRED):
        h.device_changed(DeviceChanged("alice", "d", change, None, seq=4))
    h.device_changed(DeviceChanged("alice", "d", Change.ONLINE, b"dev", seq=5))
    assert [(e.change, e.revision) for e in a.drain()] == [
        (Change.ONLINE, 1),
        (Change.UNREGISTERED, 2),
        (Change.ONLINE, 3),
    ]


def test_an_account_change_ends_its_watches_and_forbids_resuming_across_it() -> None:
    h = hub()
    change(h, "alice")
    woken: list[str] = []
    a = h.subscribe(b"s", ["alice"], lambda: woken.append("a")).subscription
    b = h.subscribe(b"t", ["bob"], lambda: woken.append("b")).subscription
    position = h.revision
    h.account_changed("alice")
    assert a.interrupted and not b.interrupted and woken == ["a"]
    # From before the change: a snapshot. From after it: resumed as usual.
    assert not h.subscribe(b"u", ["alice"], lambda: None, epoch="e1", revision=position).resumed
    assert h.subscribe(b"v", ["bob"], lambda: None, epoch="e1", revision=position).resumed
    change(h, "alice")
    after = h.subscribe(b"w", ["alice"], lambda: None, epoch="e1", revision=h.revision - 1)
    assert after.resumed and [e.handle for e in after.backlog] == ["alice"]
