"""The workers' private socket serves only the node's own workers, and a client talking
through a worker whose primary died gets one deliberate UNAVAILABLE, never gRPC's own text
(which names the private socket) nor UNKNOWN; a worker also refuses a logged-out token."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from client_sdk.protocol.refusals import Reason, error_reason
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from supernode.internal.v1 import replication_pb2
from supernode.workers.gate import SECRET_METADATA
from supernode.workers.primary import REPLICATION_SERVICE
from supernode.workers.proxy import PRIMARY_UNAVAILABLE
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.test_workers import on_a_worker
from tests.integration.waiting import eventually

Code = grpc.StatusCode


@pytest.fixture
def node(start_supernode: Callable[..., SupernodeProcess]) -> SupernodeProcess:
    return start_supernode("--workers", "2")


def private_socket(pid: int) -> str:
    """The primary's abstract socket, found as any local process would: /proc/net/unix."""
    names = {
        line.split()[-1][1:]
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]
        if line.split()[-1].startswith(f"@supernode-{pid}-")
    }
    assert len(names) == 1, names
    return f"unix-abstract:{names.pop()}"


async def test_a_process_that_is_no_worker_is_refused(node: SupernodeProcess) -> None:
    assert node.process is not None
    async with DirectoryConnection(node.grpc_target) as owner:
        await new_user(owner, "alice")
        token = owner.token
    address = private_socket(node.process.pid)
    async with grpc.aio.insecure_channel(address) as channel:
        sequence = channel.unary_unary(f"/{REPLICATION_SERVICE}/Sequence")
        follow = channel.unary_stream(f"/{REPLICATION_SERVICE}/Follow")
        get_account = channel.unary_unary("/supernode.v1.AccountService/GetAccount")
        lookup = channel.unary_unary("/supernode.v1.PresenceService/Lookup")
        empty = replication_pb2.SequenceRequest().SerializeToString()
        guesses: list[tuple[tuple[str, str], ...]] = [
            (),
            ((SECRET_METADATA, "0" * 64),),
            ((SECRET_METADATA, ""),),
        ]
        for metadata in guesses:
            calls = [
                sequence(empty, metadata=metadata, timeout=10),
                get_account(
                    pb.GetAccountRequest(handle="alice").SerializeToString(),
                    metadata=metadata,
                    timeout=10,
                ),
                lookup(  # a forwarded public call, even with a valid client token
                    pb.LookupRequest(handle="alice").SerializeToString(),
                    metadata=(*metadata, ("authorization", f"Bearer {token}")),
                    timeout=10,
                ),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await call
                assert denied.value.code() == Code.PERMISSION_DENIED, denied.value.details()
                assert error_reason(denied.value.trailing_metadata()) == Reason.INTERNAL_ONLY
            stream = follow(empty, metadata=metadata, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stream.read()
            assert denied.value.code() == Code.PERMISSION_DENIED
            assert error_reason(denied.value.trailing_metadata()) == Reason.INTERNAL_ONLY
    assert node.total("supernode_private_calls_refused_total") == len(guesses) * 4


async def test_a_worker_refuses_a_logged_out_token(node: SupernodeProcess) -> None:
    """A Logout answered by the primary reaches the worker through its feed (polled); one
    forwarded by the worker is in force there once it answers (as a write is)."""
    async with DirectoryConnection(node.grpc_target) as owner:
        alice = await new_user(owner, "alice")
        assert owner.token is not None
        worker = await on_a_worker(node, owner.token)
        try:
            await owner.logout()
            owner.token = worker.token
            await owner.login(alice, "alice")  # the account still logs in

            async def refused() -> bool:
                try:
                    await worker.lookup("alice")
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == Code.UNAUTHENTICATED and "session ended" in str(
                        exc.details()
                    )
                    return True
                return False

            await eventually(refused, 10, "the worker refuses the logged-out token")
            assert (await owner.lookup("alice")).account.handle == "alice"
            # Logged out through the worker itself: refused there by the time it answered.
            await worker.login(alice, "alice")
            ended = worker.token
            await worker.logout()
            worker.token = ended
            assert await refused()
        finally:
            await worker.close()


async def test_primary_killed_under_a_worker_gives_unavailable_without_internals(
    node: SupernodeProcess,
) -> None:
    assert node.process is not None
    primary_pid = node.process.pid
    socket_name = private_socket(primary_pid).removeprefix("unix-abstract:")
    async with DirectoryConnection(node.grpc_target) as owner:
        alice = await new_user(owner, "alice")
        assert owner.token is not None
        worker = await on_a_worker(node, owner.token)
    try:
        watch = worker.watch(["alice"])  # forwarded to the primary, open while it dies
        first = await watch.read()
        assert isinstance(first, pb.WatchEvent) and first.HasField("snapshot")
        os.kill(primary_pid, signal.SIGKILL)
        failures: list[grpc.aio.AioRpcError] = []
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(20):
                for _ in range(100):
                    await watch.read()
        failures.append(ended.value)
        # A write sent through the worker now: forwarded to a primary that is gone, or
        # refused by the worker as it drains; either way a deliberate UNAVAILABLE.
        with pytest.raises(grpc.aio.AioRpcError) as write:
            await worker.register_device(device(alice, "alice", "phone", seq=7), deadline=10)
        failures.append(write.value)
        for failure in failures:
            details = failure.details() or ""
            assert failure.code() == Code.UNAVAILABLE, (failure.code(), details)
            assert socket_name not in details and "unix" not in details, details
        assert ended.value.details() == PRIMARY_UNAVAILABLE
    finally:
        await worker.close()
