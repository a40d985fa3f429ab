"""The workers' forwarding proxy, in process: a stand-in primary with one method of each
kind (unary, server stream, bidirectional stream) behind a forwarding server, on loopback.
Bytes, metadata, deadlines, statuses and cancellation must pass through unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from client_sdk.protocol.refusals import Reason, error_reason
from client_sdk.protocol.v1 import directory_pb2, rendezvous_pb2
from supernode.internal.v1.replication_pb2_grpc import ReplicationServiceStub
from supernode.revocations import Revocations
from supernode.rpc.handlers import REFUSAL_METADATA
from supernode.store import Store
from supernode.transport import UPSTREAM_WINDOW_BYTES, open_upstream
from supernode.workers.gate import SECRET_METADATA
from supernode.workers.proxy import PRIMARY_UNAVAILABLE, Forwarder
from supernode.workers.worker import FeedApplier

SECRET = "the-private-socket-secret"

UNARY = directory_pb2.DESCRIPTOR.services_by_name["AccountService"].methods_by_name["CreateAccount"]
SERVER_STREAM = directory_pb2.DESCRIPTOR.services_by_name["PresenceService"].methods_by_name[
    "Watch"
]
BIDI = rendezvous_pb2.DESCRIPTOR.services_by_name["RelayService"].methods_by_name["Relay"]


# Above gRPC's default 4 MiB receive limit and far above the worker's stream window.
LARGE = bytes(range(256)) * (5 << 12)


def path(method: object) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"  # type: ignore[attr-defined]


class StandInPrimary:
    def __init__(self) -> None:
        self.seen_metadata: list[tuple[str, str | bytes]] = []
        self.seen_deadline: float | None = None
        self.stream_cancelled = asyncio.Event()
        self.server: grpc.aio.Server | None = None

    def handlers(self) -> grpc.GenericRpcHandler:
        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.seen_metadata = list(context.invocation_metadata() or ())
            self.seen_deadline = context.time_remaining()
            if request == b"missing":
                context.set_trailing_metadata((("why", "no such thing"),))
                await context.abort(grpc.StatusCode.NOT_FOUND, "handle: no account 'missing'")
            if request == b"resync":  # a refusal of ours: supernode.rpc.handlers marks it
                context.set_trailing_metadata(((REFUSAL_METADATA, "1"),))
                await context.abort(grpc.StatusCode.UNAVAILABLE, "watched account changed")
            if request == b"large":
                return LARGE
            return request[::-1]

        async def server_stream(
            request: bytes, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            if request == b"large":  # what a large search answer or relay frame may be
                for _ in range(2):
                    yield LARGE
                return
            try:
                for n in range(3):
                    yield request + bytes([n])
                await asyncio.sleep(3600)  # a watch: open until the client goes
            except asyncio.CancelledError:
                self.stream_cancelled.set()
                raise

        async def bidi(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for frame in requests:
                yield frame.upper()
            yield b"END"

        return _ByPath(
            {
                path(UNARY): grpc.unary_unary_rpc_method_handler(unary),
                path(SERVER_STREAM): grpc.unary_stream_rpc_method_handler(server_stream),
                path(BIDI): grpc.stream_stream_rpc_method_handler(bidi),
            }
        )


class _ByPath(grpc.GenericRpcHandler):
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(details.method)  # type: ignore[attr-defined]


@pytest.fixture
async def setup() -> AsyncIterator[tuple[StandInPrimary, grpc.aio.Channel, list[str]]]:
    primary = StandInPrimary()
    primary_server = primary.server = grpc.aio.server()
    primary_server.add_generic_rpc_handlers((primary.handlers(),))
    primary_port = primary_server.add_insecure_port("127.0.0.1:0")
    await primary_server.start()
    upstream = open_upstream(f"127.0.0.1:{primary_port}")  # the worker's own channel
    after: list[str] = []

    async def record(method: str) -> None:
        after.append(method)

    services = Forwarder(upstream, record, SECRET).handlers([UNARY, SERVER_STREAM, BIDI])
    proxy_server = grpc.aio.server()
    for service, methods in services.items():
        proxy_server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, methods),)
        )
    proxy_port = proxy_server.add_insecure_port("127.0.0.1:0")
    await proxy_server.start()
    client = grpc.aio.insecure_channel(
        f"127.0.0.1:{proxy_port}", options=(("grpc.max_receive_message_length", -1),)
    )
    yield primary, client, after
    await client.close()
    await proxy_server.stop(None)
    await upstream.close()
    await primary_server.stop(None)


async def test_unary_bytes_metadata_deadline_and_errors_pass_through(
    setup: tuple[StandInPrimary, grpc.aio.Channel, list[str]],
) -> None:
    primary, client, after = setup
    call = client.unary_unary(path(UNARY))
    metadata = (
        ("authorization", "Bearer token-1"),
        ("trace-bin", b"\x00\x01"),
        (SECRET_METADATA, "a guess"),  # a client's own is dropped: the worker adds the real one
    )
    assert await call(b"abc", metadata=metadata, timeout=30) == b"cba"
    forwarded = dict(primary.seen_metadata)
    assert forwarded["authorization"] == "Bearer token-1" and forwarded["trace-bin"] == b"\x00\x01"
    assert [v for k, v in primary.seen_metadata if k == SECRET_METADATA] == [SECRET]
    # Forwarded (rounded to the grpc-timeout header's units), not dropped.
    assert primary.seen_deadline is not None and 20 < primary.seen_deadline < 31
    assert after == [path(UNARY)]  # the read-your-writes hook ran after success
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(b"missing", timeout=30)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == "handle: no account 'missing'"
    assert ("why", "no such thing") in tuple(refused.value.trailing_metadata() or ())
    assert after == [path(UNARY)]  # not after a failure
    # The primary's own UNAVAILABLE keeps its message (only gRPC's is replaced), and the
    # mark that tells them apart stays between the node's processes.
    with pytest.raises(grpc.aio.AioRpcError) as own:
        await call(b"resync", timeout=30)
    assert own.value.code() == grpc.StatusCode.UNAVAILABLE
    assert own.value.details() == "watched account changed"
    assert REFUSAL_METADATA not in dict(own.value.trailing_metadata() or ())


async def test_server_stream_passes_through_and_cancelling_reaches_the_primary(
    setup: tuple[StandInPrimary, grpc.aio.Channel, list[str]],
) -> None:
    primary, client, _ = setup
    stream = client.unary_stream(path(SERVER_STREAM))(b"w")
    assert [await stream.read() for _ in range(3)] == [b"w\x00", b"w\x01", b"w\x02"]
    stream.cancel()
    async with asyncio.timeout(10):
        await primary.stream_cancelled.wait()


async def test_bidirectional_stream_passes_through_with_half_close(
    setup: tuple[StandInPrimary, grpc.aio.Channel, list[str]],
) -> None:
    _, client, _ = setup

    async def frames() -> AsyncIterator[bytes]:
        for frame in (b"one", b"two"):
            yield frame

    call = client.stream_stream(path(BIDI))(frames())
    assert [frame async for frame in call] == [b"ONE", b"TWO", b"END"]
    assert await call.code() == grpc.StatusCode.OK


async def test_responses_larger_than_the_window_and_the_default_limit_pass_through(
    setup: tuple[StandInPrimary, grpc.aio.Channel, list[str]],
) -> None:
    """The worker's channel buffers little per stream, yet carries any response the
    primary may send (its own send limit applies, not a smaller one of the worker's)."""
    assert len(LARGE) > max(4 << 20, UPSTREAM_WINDOW_BYTES)
    client = setup[1]
    assert await client.unary_unary(path(UNARY))(b"large", timeout=30) == LARGE
    stream = client.unary_stream(path(SERVER_STREAM))(b"large", timeout=30)
    assert [response async for response in stream] == [LARGE, LARGE]


async def test_a_primary_that_does_not_answer_is_one_deliberate_unavailable(
    setup: tuple[StandInPrimary, grpc.aio.Channel, list[str]],
) -> None:
    """Whatever gRPC reports when the primary is gone (its text names the private
    socket), the client gets UNAVAILABLE saying the outcome is unknown, nothing internal."""
    primary, client, after = setup
    stream = client.unary_stream(path(SERVER_STREAM))(b"w")
    assert await stream.read() == b"w\x00"
    assert primary.server is not None
    await primary.server.stop(None)  # as if killed: the open stream breaks
    with pytest.raises(grpc.aio.AioRpcError) as broken:
        async with asyncio.timeout(10):
            for _ in range(10):
                await stream.read()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.unary_unary(path(UNARY))(b"abc", timeout=30)
    for error in (broken.value, refused.value):
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == PRIMARY_UNAVAILABLE
        assert error_reason(error.trailing_metadata()) == Reason.PRIMARY_UNAVAILABLE
    assert after == []


async def test_a_write_the_primary_answered_stands_when_it_dies_before_the_catch_up(
    tmp_path: Path,
) -> None:
    """The primary answered a forwarded write (it is durable) and is gone before the worker
    asks how far it must catch up: the client gets the answer, not UNKNOWN (before: the
    failed Sequence call escaped the handler)."""
    primary = StandInPrimary()
    primary_server = grpc.aio.server()
    primary_server.add_generic_rpc_handlers((primary.handlers(),))
    port = primary_server.add_insecure_port("127.0.0.1:0")
    await primary_server.start()
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    upstream = open_upstream(f"127.0.0.1:{port}")
    # The stand-in serves no Sequence: the catch-up's question fails as with a dead primary.
    applier = FeedApplier(
        store,
        ReplicationServiceStub(upstream),
        SECRET,
        Revocations(),  # type: ignore[no-untyped-call]
    )
    services = Forwarder(upstream, applier.caught_up, SECRET).handlers([UNARY])
    proxy = grpc.aio.server()
    for service, methods in services.items():
        proxy.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
    proxy_port = proxy.add_insecure_port("127.0.0.1:0")
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy_port}") as client:
            assert await client.unary_unary(path(UNARY))(b"abc", timeout=30) == b"cba"
    finally:
        await proxy.stop(None)
        await upstream.close()
        await primary_server.stop(None)
        store.close()
