"""One node on several processes (``--workers``): every connection, whichever process the
kernel gave it to, sees the same directory; a client reads its own writes at once; a slow
watcher on a worker is cut off and resumes as on one process; a dead worker is replaced;
stopping the primary stops them all."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.refusals import Reason, error_reason, field_violations
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.waiting import eventually

CONNECTIONS = 16  # each its own TCP connection: all on one process has odds 2**-15
# Separate channels to one target share one connection unless told otherwise.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
# Small HTTP/2 windows, so a reader that stops reading pushes back on the server soon.
SMALL_WINDOWS = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384))
_SEQ = itertools.count(1)


@pytest.fixture
def node(start_supernode: Callable[..., SupernodeProcess]) -> SupernodeProcess:
    return start_supernode("--workers", "2")


@pytest.fixture
async def connections(node: SupernodeProcess) -> AsyncIterator[list[DirectoryConnection]]:
    opened = [
        DirectoryConnection(node.grpc_target, options=OWN_CONNECTION) for _ in range(CONNECTIONS)
    ]
    yield opened
    for connection in opened:
        await connection.close()


def lookups_served(url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sample(text, "supernode_rpc_requests_total", method="Lookup", code="OK")


async def device_ids(connection: DirectoryConnection, handle: str) -> list[str]:
    devices = (await connection.lookup(handle)).devices
    return sorted(pb.DeviceRecord.FromString(d.signed.record).device_id for d in devices)


async def register(connection: DirectoryConnection, identity: Identity, device_id: str) -> None:
    await connection.register_device(device(identity, "alice", device_id, seq=next(_SEQ)))


async def test_every_connection_sees_one_directory(
    node: SupernodeProcess, connections: list[DirectoryConnection]
) -> None:
    assert len(node.workers) == 1
    writer, *readers = connections
    identity = await new_user(writer, "alice")
    await register(writer, identity, "phone")
    assert await device_ids(writer, "alice") == ["phone"]  # its own write, at once
    for reader in readers:
        reader.token = writer.token

    async def all_see(expected: list[str]) -> bool:
        seen = await asyncio.gather(*(device_ids(c, "alice") for c in readers))
        return all(ids == expected for ids in seen)

    await eventually(lambda: all_see(["phone"]), 10, "every connection sees the registration")
    # Each process answered some of them: the lookups did not all go to the primary.
    served = [lookups_served(url) for url in node.metrics_urls()]
    assert all(count > 0 for count in served), served

    other = readers[3]
    await register(other, identity, "laptop")
    assert await device_ids(other, "alice") == ["laptop", "phone"]  # read-your-writes
    assert await other.unregister_device("phone")
    assert await device_ids(other, "alice") == ["laptop"]
    await eventually(lambda: all_see(["laptop"]), 10, "every connection sees the unregister")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await readers[5].lookup("nobody")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_forwarded_errors_and_streams_are_the_primarys(
    node: SupernodeProcess, connections: list[DirectoryConnection]
) -> None:
    first = connections[0]
    identity = await new_user(first, "alice")
    for connection in connections:
        # Forwarded (CreateAccount): the primary's status and message, unchanged.
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await connection.create_account(identity, "alice")
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "taken" in (taken.value.details() or "")
        assert error_reason(taken.value.trailing_metadata()) == Reason.HANDLE_TAKEN
        if connection is first:
            continue  # logged in
        # Answered locally (Lookup) without a token: the same check as the primary's.
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await connection.lookup("alice")
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(anonymous.value.trailing_metadata()) == Reason.TOKEN_MISSING
    # A forwarded refusal of a field keeps its field violation.
    with pytest.raises(grpc.aio.AioRpcError) as long_name:
        await connections[1].create_account(Identity.generate(), "longname", "x" * 65)
    assert error_reason(long_name.value.trailing_metadata()) == Reason.INVALID_FIELD
    violations = field_violations(long_name.value.trailing_metadata())
    assert [v.field for v in violations] == ["account.display_name"]
    # A watch (server stream) through every connection gets the change made on another.
    watcher = connections[7]
    await watcher.login(identity, "alice")
    stream = watcher.watch(["alice"])
    async with asyncio.timeout(10):
        snapshot = await stream.read()
    assert isinstance(snapshot, pb.WatchEvent) and snapshot.HasField("snapshot")
    await register(first, identity, "phone")
    async with asyncio.timeout(10):
        change = await stream.read()
    assert isinstance(change, pb.WatchEvent) and change.HasField("change"), change
    assert change.change.device_id == "phone"
    stream.cancel()


async def test_a_dead_worker_is_replaced_and_stopping_the_primary_stops_all(
    node: SupernodeProcess,
) -> None:
    worker_pid = int(str(node.workers[0]["pid"]))
    os.kill(worker_pid, signal.SIGKILL)
    node.wait_for("worker 1 exited", timeout=10)

    async def replaced() -> bool:
        return len(worker_ready_lines(node)) == 2

    await eventually(replaced, 30, "a new worker is ready")
    await eventually(lambda: _restarts(node), 10, "the restart is counted")
    new_pid = int(worker_ready_lines(node)[-1].split('"pid": ')[1].split(",")[0])
    assert new_pid != worker_pid
    async with DirectoryConnection(node.grpc_target, options=OWN_CONNECTION) as connection:
        await new_user(connection, "alice")
        assert (await connection.lookup("alice")).account.handle == "alice"
    assert node.terminate() == 0
    await eventually(lambda: _gone(new_pid), 10, "the worker exits with the primary")


async def on_a_worker(node: SupernodeProcess, token: str) -> DirectoryConnection:
    """A connection (logged in with ``token``) that the kernel gave to the worker: its
    lookup is counted on the worker's metrics, not the primary's."""
    worker_url = node.metrics_urls()[1]
    for _ in range(CONNECTIONS):
        connection = DirectoryConnection(node.grpc_target, options=OWN_CONNECTION + SMALL_WINDOWS)
        connection.token = token
        before = lookups_served(worker_url)
        await connection.lookup("alice")
        if lookups_served(worker_url) > before:
            return connection
        await connection.close()
    raise AssertionError(f"none of {CONNECTIONS} connections went to the worker")


def record_seq(event: pb.WatchEvent) -> int:
    return pb.DeviceRecord.FromString(event.change.device.signed.record).seq


async def read_changes(
    stream: grpc.aio.UnaryStreamCall, into: list[pb.WatchEvent], last_seq: int
) -> None:
    """Append change events to ``into``, checked gapless, until the one with ``last_seq``;
    a stream that ends raises its status (AioRpcError), keeping what it delivered."""
    async with asyncio.timeout(30):
        while not into or record_seq(into[-1]) != last_seq:
            message = await stream.read()
            assert message is not grpc.aio.EOF, "the stream ended with OK"
            assert isinstance(message, pb.WatchEvent) and message.HasField("change"), message
            assert not into or message.revision == into[-1].revision + 1, "a change was lost"
            into.append(message)


async def test_a_slow_watcher_on_a_worker_is_cut_off_and_resumes_without_a_gap(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """The watcher's connection is on the worker, which relays the primary's stream. It
    stops reading while Alice's device changes 400 times: the relay must not soak the
    events up (it once held megabytes, so the watcher was never cut off), so the primary's
    8-event queue for it overflows and the stream ends RESOURCE_EXHAUSTED, as on one
    process. Resuming from the last position received delivers every remaining change."""
    node = start_supernode("--workers", "2", "--limits-watch-queue-events", "8")
    async with DirectoryConnection(node.grpc_target, options=OWN_CONNECTION) as writer:
        identity = await new_user(writer, "alice")
        watcher = await on_a_worker(node, writer.token or "")
        try:
            stream = watcher.watch(["alice"])
            async with asyncio.timeout(10):
                snapshot = await stream.read()
            assert isinstance(snapshot, pb.WatchEvent) and snapshot.HasField("snapshot")
            seqs = [next(_SEQ) for _ in range(400)]
            for seq in seqs:  # the watcher reads nothing meanwhile
                await writer.register_device(device(identity, "alice", "phone", seq=seq))
            received: list[pb.WatchEvent] = []
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await read_changes(stream, received, seqs[-1])
            assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert received and received[0].revision == snapshot.revision + 1
            resumed = watcher.watch(["alice"], received[-1].epoch, received[-1].revision)
            async with asyncio.timeout(10):
                first = await resumed.read()
            assert isinstance(first, pb.WatchEvent) and first.resumed, first
            rest = received[-1:]
            await read_changes(resumed, rest, seqs[-1])
            resumed.cancel()
            assert [record_seq(e) for e in received + rest[1:]] == seqs
            assert sample(
                node.metrics(),
                "supernode_rpc_requests_total",
                method="Watch",
                code="RESOURCE_EXHAUSTED",
            )
        finally:
            await watcher.close()


def worker_ready_lines(node: SupernodeProcess) -> list[str]:
    return [line for line in node.log if "supernode worker ready" in line]


async def _restarts(node: SupernodeProcess) -> bool:
    return sample(node.metrics(), "supernode_worker_restarts_total") >= 1


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
