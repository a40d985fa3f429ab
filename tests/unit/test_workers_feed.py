"""The primary's change feed: coalescing, reset on join and on overflow, bounded memory."""

from supernode.workers.feed import ChangeFeed


async def test_a_new_follower_starts_with_a_reset_at_the_current_sequence() -> None:
    feed = ChangeFeed(sequence=7)
    follower = feed.follow()
    assert follower.ready.is_set()
    first = follower.take()
    assert first is not None and first.reset and first.sequence == 7 and not first.keys
    assert follower.take() is None and not follower.ready.is_set()


async def test_changes_coalesce_until_taken() -> None:
    feed = ChangeFeed(sequence=0)
    follower = feed.follow()
    follower.take()
    feed.publish(3, [b"alice"])
    feed.publish(5, [b"bob", b"alice"])
    feed.publish(6, [])  # a write that changed no view still advances the sequence
    assert follower.ready.is_set()
    changes = follower.take()
    assert changes is not None and not changes.reset
    assert changes.sequence == 6 and changes.keys == {b"alice", b"bob"}
    assert follower.take() is None


async def test_a_follower_too_far_behind_gets_a_reset_not_unbounded_keys() -> None:
    feed = ChangeFeed(sequence=0, key_limit=3)
    follower = feed.follow()
    follower.take()
    for n in range(10):
        feed.publish(n + 1, [f"user{n}".encode()])
    changes = follower.take()
    assert changes is not None and changes.reset and changes.sequence == 10 and not changes.keys
    feed.publish(11, [b"carol"])
    after = follower.take()
    assert after is not None and not after.reset and after.keys == {b"carol"}


async def test_followers_are_independent_and_leaving_stops_delivery() -> None:
    feed = ChangeFeed(sequence=0)
    slow, fast = feed.follow(), feed.follow()
    slow.take()
    fast.take()
    feed.publish(1, [b"a"])
    assert (fast.take() or None) is not None
    feed.leave(slow)
    feed.publish(2, [b"b"])
    assert feed.followers == 1
    pending = slow.take()
    assert pending is not None and pending.keys == {b"a"}  # only what came before it left
