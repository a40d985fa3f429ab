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


def big_change(h: WatchHub, handle: str, size: int) -> None:
    h.device_changed(DeviceChanged(handle, "d", Change.UPDATED, b"x" * size))


def test_a_watcher_queue_is_bounded_in_bytes_and_cut_off() -> None:
    cuts: list[str] = []
    h = WatchHub(
        clock=lambda: 0.0, history=100, queue_limit=1000, max_handles=2,
        max_watches_per_session=2, queue_bytes=120_000,
    )  # fmt: skip
    sub = h.subscribe(b"s", ["alice"], lambda: None, cut=lambda: cuts.append("cut")).subscription
    big_change(h, "alice", 50_000)
    big_change(h, "alice", 50_000)
    assert not sub.overflowed and h.bounds.queued_bytes == sub.pending_bytes > 100_000
    big_change(h, "alice", 50_000)  # a third would pass 120 KB
    assert sub.overflowed and cuts == ["cut"] and h.bounds.queued_bytes == 0


def test_all_watchers_together_are_bounded_in_bytes() -> None:
    h = WatchHub(
        clock=lambda: 0.0, history=100, queue_limit=1000, max_handles=2,
        max_watches_per_session=2, queue_bytes=1 << 20, node_queue_bytes=150_000,
    )  # fmt: skip
    first = h.subscribe(b"s", ["alice"], lambda: None).subscription
    second = h.subscribe(b"t", ["alice"], lambda: None).subscription
    big_change(h, "alice", 50_000)  # 100 KB queued in all
    big_change(h, "alice", 50_000)  # one more fits in 150 KB, two do not
    assert sorted([first.overflowed, second.overflowed]) == [False, True]
    assert h.bounds.queued_bytes == first.pending_bytes + second.pending_bytes < 150_000
    h.unsubscribe(first)
    h.unsubscribe(second)
    assert h.bounds.queued_bytes == 0


def test_a_stalled_watcher_is_cut_off_by_the_sweep_even_with_no_new_event() -> None:
    now = [0.0]
    cuts: list[str] = []
    h = WatchHub(
        clock=lambda: now[0], history=100, queue_limit=1000, max_handles=2,
        max_watches_per_session=2, stall_seconds=30.0,
    )  # fmt: skip
    sub = h.subscribe(b"s", ["alice"], lambda: None, cut=lambda: cuts.append("cut")).subscription
    reader = h.subscribe(b"t", ["alice"], lambda: None).subscription
    change(h, "alice")
    reader.drain()  # this one reads
    now[0] = 20.0
    assert h.sweep() == 0
    now[0] = 31.0
    assert h.sweep() == 1
    assert sub.overflowed and cuts == ["cut"] and not reader.overflowed


def test_history_is_bounded_in_bytes_as_well_as_events() -> None:
    h = WatchHub(
        clock=lambda: 0.0, history=100_000, queue_limit=10, max_handles=2,
        max_watches_per_session=2, history_bytes=200_000,
    )  # fmt: skip
    for _ in range(10):
        big_change(h, "alice", 50_000)
    assert h.history_bytes <= 200_000 and len(h._history) == 3
    # a position older than what is left gets a snapshot, never a gap
    assert not h.subscribe(b"s", ["alice"], lambda: None, epoch=h.epoch, revision=5).resumed
    assert h.subscribe(b"t", ["alice"], lambda: None, epoch=h.epoch, revision=7).resumed


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


def test_a_renewal_that_changed_nothing_visible_is_no_event_and_takes_no_history() -> None:
    h = hub()
    woken: list[str] = []
    watcher = h.subscribe(b"s", ["alice"], lambda: woken.append("a")).subscription
    change(h, "alice")
    for _ in range(10):  # more renewals than the history holds
        change(h, "alice", Change.RENEWED)
    change(h, "alice", Change.EXPIRED)
    assert [e.change for e in watcher.drain()] == [Change.ONLINE, Change.EXPIRED]
    assert woken == ["a", "a"] and h.revision == 2
    # A watcher that left after the first event resumes from the history, not a snapshot.
    assert h.subscribe(b"t", ["alice"], lambda: None, epoch="e1", revision=1).resumed
