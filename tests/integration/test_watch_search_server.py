"""Watch and Search at the gRPC level, against a real supernode (the SDK builds on these)."""

import asyncio
from collections.abc import Callable

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.v1 import search_pb2, search_pb2_grpc
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess
from tests.integration.records import device


class Watcher:
    """A Watch stream whose events are collected in the background."""

    def __init__(self, conn: DirectoryConnection, handles: list[str], **position: object) -> None:
        self.call = conn.presence.Watch(
            pb.WatchRequest(handles=handles, **position),  # type: ignore[arg-type]
            metadata=conn.metadata,
        )
        self.events: list[pb.WatchEvent] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for event in self.call:
                self.events.append(event)
        except grpc.aio.AioRpcError as error:
            self.error = error

    async def wait_for(self, count: int, within: float = 10.0) -> list[pb.WatchEvent]:
        deadline = asyncio.get_running_loop().time() + within
        while len(self.events) < count:
            assert asyncio.get_running_loop().time() < deadline, (self.events, self.error)
            await asyncio.sleep(0.02)
        return self.events

    async def ended(self, within: float = 10.0) -> grpc.aio.AioRpcError | None:
        async with asyncio.timeout(within):
            await self._task
        return self.error

    def cancel(self) -> None:
        self.call.cancel()


def kinds(events: list[pb.WatchEvent]) -> list[tuple[str, str, int, int]]:
    return [
        (e.change.handle, e.change.device_id, e.change.kind, e.change.reason)
        for e in events
        if e.HasField("change")
    ]


async def test_watch_snapshot_then_changes_in_order(
    connect: Callable[[], DirectoryConnection],
) -> None:
    a_conn, b_conn = connect(), connect()
    await new_user(a_conn, "alice")
    bob = await new_user(b_conn, "bob")
    await b_conn.register_device(device(bob, "bob", "phone", seq=1))
    watcher = Watcher(a_conn, ["bob", "ghost"])
    [first] = await watcher.wait_for(1)
    assert first.HasField("snapshot") and not first.resumed
    assert [r.account.handle for r in first.snapshot.handles] == ["bob"]
    assert len(first.snapshot.handles[0].devices) == 1
    assert list(first.snapshot.not_found) == ["ghost"]

    await b_conn.register_device(device(bob, "bob", "laptop", seq=1))
    await b_conn.register_device(device(bob, "bob", "phone", seq=2, status=pb.DEVICE_STATUS_BUSY))
    await b_conn.unregister_device("laptop")
    events = await watcher.wait_for(4)
    assert kinds(events) == [
        ("bob", "laptop", pb.CHANGE_KIND_ONLINE, 0),
        ("bob", "phone", pb.CHANGE_KIND_UPDATED, 0),
        ("bob", "laptop", pb.CHANGE_KIND_OFFLINE, pb.OFFLINE_REASON_UNREGISTERED),
    ]
    updated = pb.DeviceRecord.FromString(events[2].change.device.signed.record)
    assert updated.status == pb.DEVICE_STATUS_BUSY
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and len(set(e.epoch for e in events)) == 1
    watcher.cancel()


async def test_resume_gets_missed_changes_and_expiry_reaches_watchers(
    supernode: SupernodeProcess, connect: Callable[[], DirectoryConnection]
) -> None:
    a_conn, b_conn = connect(), connect()
    await new_user(a_conn, "alice")
    bob = await new_user(b_conn, "bob")
    watcher = Watcher(a_conn, ["bob"])
    [snapshot] = await watcher.wait_for(1)
    watcher.cancel()
    await b_conn.register_device(device(bob, "bob", "short", ttl=1))
    await b_conn.register_device(device(bob, "bob", "long", ttl=600))

    resumed = Watcher(a_conn, ["bob"], epoch=snapshot.epoch, revision=snapshot.revision)
    events = await resumed.wait_for(4)  # resumed marker, 2 missed, then the expiry
    assert events[0].resumed and not events[0].HasField("snapshot")
    assert kinds(events) == [
        ("bob", "short", pb.CHANGE_KIND_ONLINE, 0),
        ("bob", "long", pb.CHANGE_KIND_ONLINE, 0),
        ("bob", "short", pb.CHANGE_KIND_OFFLINE, pb.OFFLINE_REASON_EXPIRED),
    ]
    assert sample(supernode.metrics(), "supernode_watch_notification_delay_seconds_count") >= 1
    assert sample(supernode.metrics(), "supernode_watch_subscribers") == 1
    resumed.cancel()

    stale = Watcher(a_conn, ["bob"], epoch="another-epoch", revision=1)
    [fresh] = await stale.wait_for(1)
    assert fresh.HasField("snapshot") and not fresh.resumed
    stale.cancel()


async def test_watch_limits_and_auth(start_supernode: Callable[..., SupernodeProcess]) -> None:
    node = start_supernode(
        "--limits-max-watch-handles", "2", "--limits-max-watches-per-session", "1"
    )
    async with DirectoryConnection(node.grpc_target) as conn:
        await new_user(conn, "alice")
        too_many = Watcher(conn, ["a1a", "b2b", "c3c"])
        error = await too_many.ended()
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 2 per watch" in (error.details() or "")
        bad = Watcher(conn, ["Not Valid"])
        error = await bad.ended()
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        first = Watcher(conn, ["alice"])
        await first.wait_for(1)
        second = Watcher(conn, ["alice"])
        error = await second.ended()
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()
        conn.token = None
        anonymous = Watcher(conn, ["alice"])
        error = await anonymous.ended()
        assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_watch_ends_unavailable_on_shutdown(
    supernode: SupernodeProcess, connect: Callable[[], DirectoryConnection]
) -> None:
    conn = connect()
    await new_user(conn, "alice")
    watcher = Watcher(conn, ["alice"])
    await watcher.wait_for(1)
    assert await asyncio.to_thread(supernode.terminate) == 0
    error = await watcher.ended()
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE


async def test_search_folding_ranking_discoverability_limit_and_rate(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode("--limits-search-burst", "8", "--limits-search-rate-per-second", "0.01")
    async with DirectoryConnection(node.grpc_target) as conn:
        people = [
            ("jose", "Someone Else", True),
            ("jalvarez", "José Álvarez", True),
            ("josefina", "Josefina Ruiz", True),
            ("hidden", "José Hidden", False),
            ("zed", "Zed", True),
        ]
        for handle, name, discoverable in people:
            await conn.create_account(Identity.generate(), handle, name, discoverable)
        await new_user(conn, "searcher")
        stub = search_pb2_grpc.SearchServiceStub(conn.channel)  # type: ignore[no-untyped-call]

        async def search(query: str, limit: int = 0) -> list[str]:
            reply = await stub.Search(
                search_pb2.SearchRequest(query=query, limit=limit), metadata=conn.metadata
            )
            return [a.handle for a in reply.accounts]

        assert await search("jose") == ["jose", "josefina", "jalvarez"]  # exact, prefix, word
        assert await search("ALV") == ["jalvarez"]
        assert await search("álvarez josé") == ["jalvarez"]
        assert await search("hidd") == []  # undiscoverable: never returned
        assert await search("jos", limit=1) == ["jose"]
        with pytest.raises(grpc.aio.AioRpcError) as short:
            await search("j")
        assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        outcomes = []
        for _ in range(5):
            try:
                await search("zed")
                outcomes.append("ok")
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "rate limit" in (error.details() or "")
                outcomes.append("limited")
        assert outcomes[-1] == "limited" and outcomes.count("ok") == 2
