"""The etcd adapter against real etcd: keys, transactions, kept leases, watches that survive
a crash of etcd, compaction, and failover in a 3-member cluster.

The first tests cover the adapter's pure parts (resume arithmetic, lease schedule, error
classes); the rest run real etcd processes started by the launcher.
"""

import asyncio
import contextlib
import random
import re
from pathlib import Path

import pytest

from supernode.cluster.etcd import (
    Backoff,
    Compacted,
    EtcdClient,
    EtcdConfig,
    EtcdUnavailable,
    EventKind,
    Failure,
    LeaseNotFound,
    LeaseSchedule,
    WatchBatch,
    WatchCursor,
    WatchEvent,
    classify,
    prefix_range_end,
)
from supernode.cluster.etcd_server import LocalEtcd
from tests.cluster.conftest import ClientFactory
from tests.integration.waiting import eventually

pytestmark = pytest.mark.slow

PUT, DELETE = EventKind.PUT, EventKind.DELETE


# --------------------------------------------------------------------------- pure parts


def test_prefix_range_end_covers_exactly_the_prefix() -> None:
    assert prefix_range_end(b"/members/") == b"/members0"
    assert prefix_range_end(b"a\xff\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"  # no upper bound
    assert prefix_range_end(b"") == b"\0"


def _put(revision: int) -> WatchEvent:
    return WatchEvent(PUT, b"k", b"v", revision)


def test_watch_cursor_delivers_each_revision_once() -> None:
    cursor = WatchCursor(5)
    batch = cursor.events([_put(5), _put(5), _put(6)])  # one revision may hold several events
    assert batch == WatchBatch([_put(5), _put(5), _put(6)], 6)
    assert cursor.next_revision == 7
    assert cursor.events([_put(6)]) is None  # a replay after a resume is dropped
    assert cursor.events([_put(6), _put(7)]) == WatchBatch([_put(7)], 7)
    assert cursor.progress(7) is None  # nothing new
    assert cursor.progress(10) == WatchBatch([], 10)
    assert cursor.next_revision == 11


def test_watch_cursor_from_now_starts_after_the_creation_revision() -> None:
    cursor = WatchCursor(0)
    cursor.created(41)
    assert cursor.next_revision == 42
    cursor.created(50)  # a re-created stream resumes where it was, not from its own "now"
    assert cursor.next_revision == 42
    with pytest.raises(ValueError):
        WatchCursor(-1)


def test_lease_schedule_refreshes_at_a_third_and_never_retries_past_expiry() -> None:
    schedule = LeaseSchedule.granted(sent_at=100.0, ttl=9)
    assert (schedule.next_refresh_at, schedule.expires_at) == (103.0, 109.0)
    schedule.failed(now=104.0, retry_in=0.5)
    assert schedule.next_refresh_at == 104.5
    schedule.failed(now=108.0, retry_in=5.0)
    assert schedule.next_refresh_at == 109.0
    assert not schedule.expired(108.9) and schedule.expired(109.0)
    schedule.refreshed(sent_at=105.0, ttl=9)
    assert (schedule.next_refresh_at, schedule.expires_at) == (108.0, 114.0)


def test_classify_separates_outages_from_refusals() -> None:
    assert classify("UNAVAILABLE", "etcdserver: leader changed") is Failure.TRANSIENT
    assert classify("DEADLINE_EXCEEDED", "") is Failure.TRANSIENT
    assert classify("NOT_FOUND", "etcdserver: requested lease not found") is (
        Failure.LEASE_NOT_FOUND
    )
    assert classify("OUT_OF_RANGE", "mvcc: required revision has been compacted") is (
        Failure.COMPACTED
    )
    assert classify("OUT_OF_RANGE", "mvcc: required revision is a future revision") is (
        Failure.REFUSED
    )
    assert classify("INVALID_ARGUMENT", "etcdserver: key is not provided") is Failure.REFUSED


def test_backoff_is_jittered_capped_and_resets() -> None:
    backoff = Backoff(0.1, 0.4, random.Random(7))
    steps = [0.1, 0.2, 0.4, 0.4]
    for step in steps:
        assert step / 2 <= backoff.next_delay() <= step
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_config_rejects_what_cannot_be_dialled() -> None:
    for endpoints in ((), ("localhost",), ("127.0.0.1:port",)):
        with pytest.raises(ValueError):
            EtcdConfig(endpoints)
    with pytest.raises(ValueError):
        EtcdConfig(("127.0.0.1:2379",), call_timeout_s=0)


# --------------------------------------------------------------------------- keys


async def _absent(client: EtcdClient, key: bytes) -> bool:
    return await client.get(key) is None


async def test_get_put_delete_and_prefix(etcd: LocalEtcd, connect: ClientFactory) -> None:
    client = connect(etcd, page_size=2)  # several pages per prefix read
    assert await client.get(b"/t/missing") is None
    revisions = [await client.put(f"/t/{i}".encode(), f"v{i}".encode()) for i in range(5)]
    await client.put(b"/t0", b"outside")  # sorts right after the prefix, is not under it

    entry = await client.get(b"/t/3")
    assert entry is not None
    assert (entry.value, entry.mod_revision, entry.create_revision) == (
        b"v3",
        revisions[3],
        revisions[3],
    )
    rewritten = await client.put(b"/t/3", b"again")
    entry = await client.get(b"/t/3")
    assert entry is not None
    assert (entry.value, entry.mod_revision, entry.create_revision) == (
        b"again",
        rewritten,
        revisions[3],
    )

    await client.delete(b"/t/0")
    await client.delete(b"/t/never-existed")
    assert await client.get(b"/t/0") is None
    snapshot = await client.get_prefix(b"/t/")
    assert [(e.key, e.value) for e in snapshot.entries] == [
        (b"/t/1", b"v1"),
        (b"/t/2", b"v2"),
        (b"/t/3", b"again"),
        (b"/t/4", b"v4"),
    ]
    assert snapshot.revision == await client.put(b"/next", b"x") - 1
    assert (await client.get_prefix(b"/nothing/")).entries == []


async def test_prefix_pages_are_bounded_and_read_at_one_revision(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    """What a resync of millions of accounts relies on: at most ``page_size`` keys held at a
    time, and later pages read at the first page's revision even while others write."""
    client = connect(etcd, page_size=3)
    for i in range(8):
        await client.put(f"/p/{i}".encode(), b"before")
    pages = []
    async for page in client.prefix_pages(b"/p/"):
        pages.append(page)
        await client.put(f"/p/{len(pages)}x".encode(), b"written meanwhile")  # not seen
    assert [len(p.entries) for p in pages] == [3, 3, 2]
    assert len({p.revision for p in pages}) == 1
    assert [e.key for p in pages for e in p.entries] == [f"/p/{i}".encode() for i in range(8)]


async def test_exactly_one_of_50_concurrent_creators_wins(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    clients = [connect(etcd), connect(etcd)]  # two nodes' connections
    results = await asyncio.gather(
        *(
            clients[i % 2].create_if_absent(b"/accounts/alice", f"claimant-{i}".encode())
            for i in range(50)
        )
    )
    assert results.count(True) == 1
    entry = await clients[0].get(b"/accounts/alice")
    assert entry is not None
    assert entry.value == f"claimant-{results.index(True)}".encode()
    assert not await clients[1].create_if_absent(b"/accounts/alice", b"late")


async def test_compare_and_swap(etcd: LocalEtcd, connect: ClientFactory) -> None:
    client = connect(etcd)
    assert await client.compare_and_swap(b"/placement", b"epoch-1", 0)  # must not exist
    assert not await client.compare_and_swap(b"/placement", b"again", 0)
    current = await client.get(b"/placement")
    assert current is not None
    assert not await client.compare_and_swap(b"/placement", b"stale", current.mod_revision - 1)

    results = await asyncio.gather(
        *(
            client.compare_and_swap(b"/placement", f"epoch-2-by-{i}".encode(), current.mod_revision)
            for i in range(20)
        )
    )
    assert results.count(True) == 1
    final = await client.get(b"/placement")
    assert final is not None
    assert final.value == f"epoch-2-by-{results.index(True)}".encode()
    assert final.mod_revision > current.mod_revision


# --------------------------------------------------------------------------- leases


async def test_kept_lease_keeps_its_key_past_three_ttls_then_revoke_deletes_it(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    client = connect(etcd)
    lease = await client.grant_kept_lease(2)
    assert lease.ttl >= 2
    await client.put(b"/members/n1", b"10.0.0.1:7000", lease=lease)

    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * lease.ttl + 0.5
    checks = 0
    while loop.time() < until:  # the key must be there at every look, for 3 TTLs
        assert await client.get(b"/members/n1") is not None, "expired although kept alive"
        assert not lease.lost.is_set(), lease.lost_reason
        checks += 1
        await asyncio.sleep(0.2)
    assert checks >= 10

    await lease.revoke()
    assert await client.get(b"/members/n1") is None  # revocation deletes at once
    with pytest.raises(LeaseNotFound):
        await client.put(b"/members/n1", b"again", lease=lease)


async def test_a_lease_no_longer_kept_lets_its_key_expire_within_its_ttl(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    """What the cluster sees of a node that stops refreshing (a hung or killed process)."""
    client = connect(etcd)
    lease = await client.grant_kept_lease(2)
    await client.put(b"/members/n2", b"addr", lease=lease)
    await lease.abandon()
    # The TTL restarts with the last refresh; etcd checks for expiry every 500 ms.
    await eventually(lambda: _absent(client, b"/members/n2"), within=lease.ttl + 2.0, what="expiry")
    assert not lease.lost.is_set()  # it was given up, not lost


async def test_lease_is_lost_when_etcd_is_down_longer_than_its_ttl(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    client = connect(etcd, call_timeout_s=1.0)
    lease = await client.grant_kept_lease(2)
    await client.put(b"/members/n3", b"addr", lease=lease)

    await etcd.kill(0)
    async with asyncio.timeout(lease.ttl + 3.0):
        await lease.lost.wait()
    assert lease.lost_reason is not None and "TTL" in lease.lost_reason

    # Nothing re-grants or refreshes it behind the owner's back: once etcd is back (which
    # re-arms every lease's full TTL) the key still goes, and the owner starts afresh.
    await etcd.restart(0)
    await eventually(lambda: _absent(client, b"/members/n3"), within=lease.ttl + 3.0, what="expiry")
    fresh = await client.grant_kept_lease(2)
    assert fresh.id != lease.id
    await fresh.revoke()


# --------------------------------------------------------------------------- watches


async def test_watch_resumes_across_an_etcd_crash_without_losing_or_repeating(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    client = connect(etcd)
    impatient = connect(etcd, call_timeout_s=0.5)
    written: list[tuple[EventKind, bytes, bytes]] = []

    async def put(key: bytes, value: bytes) -> int:
        revision = await client.put(key, value)
        written.append((PUT, key, value))
        return revision

    async def delete(key: bytes) -> None:
        await client.delete(key)
        written.append((DELETE, key, b""))

    first = await put(b"/w/a", b"1")
    await put(b"/w/b", b"1")
    await delete(b"/w/a")
    await client.put(b"/elsewhere", b"not watched")

    watch = client.watch_prefix(b"/w/", first)
    received: list[WatchBatch] = []

    async def consume() -> None:
        async for batch in watch:
            received.append(batch)

    async def delivered_all() -> bool:
        return sum(len(batch.events) for batch in received) >= len(written)

    async def disconnected() -> bool:
        return not watch.connected

    consumer = asyncio.create_task(consume())
    try:
        await eventually(delivered_all, within=5.0, what="events before the crash")
        await etcd.kill(0)
        await eventually(disconnected, within=5.0, what="the watch noticing the crash")
        endpoint = re.escape(etcd.client_endpoints[0])
        with pytest.raises(EtcdUnavailable, match=endpoint):
            await impatient.put(b"/w/during", b"never stored")
        await etcd.restart(0)
        for index in range(5):  # written while the watch is still reconnecting
            await put(f"/w/after-{index}".encode(), b"2")
        await delete(b"/w/b")
        await eventually(delivered_all, within=10.0, what="events after the restart")
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    events = [event for batch in received for event in batch.events]
    assert [(e.kind, e.key, e.value) for e in events] == written
    revisions = [event.mod_revision for event in events]
    assert revisions[0] == first
    assert revisions == sorted(set(revisions))  # in order, none twice
    assert all(batch.revision == batch.events[-1].mod_revision for batch in received)
    assert watch.reconnects >= 1


async def test_a_compacted_start_revision_raises_compacted_and_resync_works(
    etcd: LocalEtcd, connect: ClientFactory
) -> None:
    client = connect(etcd)
    revisions = [await client.put(b"/c/k", str(i).encode()) for i in range(4)]
    await client.compact(revisions[2])
    await client.compact(revisions[1])  # already compacted further: nothing to do

    stale = client.watch_prefix(b"/c/", revisions[1])
    with pytest.raises(Compacted) as raised:
        async with asyncio.timeout(5.0):
            await anext(stale)
    assert raised.value.compact_revision == revisions[2]

    # The caller's resync: a snapshot, then a watch from just after it.
    snapshot = await client.get_prefix(b"/c/")
    assert [entry.value for entry in snapshot.entries] == [b"3"]
    resynced = client.watch_prefix(b"/c/", snapshot.revision + 1)
    oldest = client.watch_prefix(b"/c/", revisions[2])  # the compaction point itself is kept
    try:
        latest = await client.put(b"/c/k", b"4")
        async with asyncio.timeout(5.0):
            batch = await anext(resynced)
        assert [(e.value, e.mod_revision) for e in batch.events] == [(b"4", latest)]
        async with asyncio.timeout(5.0):
            batch = await anext(oldest)
        assert batch.events[0].mod_revision == revisions[2]
    finally:
        await resynced.aclose()
        await oldest.aclose()


# --------------------------------------------------------------------------- failover


async def test_three_member_cluster_serves_through_a_member_crash(
    etcd_cluster: LocalEtcd, connect: ClientFactory
) -> None:
    client = connect(etcd_cluster)
    start = await client.put(b"/f/before", b"1")
    watch = client.watch_prefix(b"/f/", start)
    try:
        async with asyncio.timeout(5.0):
            batch = await anext(watch)
        assert [e.key for e in batch.events] == [b"/f/before"]
        # Calls and the watch start on the first endpoint; crash the member behind it.
        assert watch.endpoint == etcd_cluster.client_endpoints[0]
        await etcd_cluster.kill(0)

        after = await client.put(b"/f/after", b"2")
        entry = await client.get(b"/f/after")
        assert entry is not None and entry.mod_revision == after
        assert await client.create_if_absent(b"/f/claim", b"me")
        assert not await client.create_if_absent(b"/f/claim", b"you")
        lease = await client.grant_kept_lease(2)
        await client.put(b"/f/member", b"up", lease=lease)
        await lease.revoke()

        events: list[WatchEvent] = []
        for _ in range(4):  # at most one batch per write
            if len(events) >= 4:
                break
            async with asyncio.timeout(10.0):
                events += (await anext(watch)).events
        assert [(e.kind, e.key) for e in events] == [
            (PUT, b"/f/after"),
            (PUT, b"/f/claim"),
            (PUT, b"/f/member"),
            (DELETE, b"/f/member"),
        ]
        assert watch.endpoint in etcd_cluster.client_endpoints[1:]
    finally:
        await watch.aclose()


async def test_a_kept_directory_restarts_the_same_cluster(
    tmp_path: Path, connect: ClientFactory
) -> None:
    """dev-cluster's case: members stored their peers' URLs, so a restart keeps the ports."""
    async with LocalEtcd(3, directory=tmp_path) as first:
        endpoints = first.client_endpoints
        await connect(first).put(b"/kept", b"yes")
    async with LocalEtcd(3, directory=tmp_path) as second:
        assert second.client_endpoints == endpoints
        entry = await connect(second).get(b"/kept")
        assert entry is not None and entry.value == b"yes"
