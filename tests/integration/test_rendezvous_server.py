"""Rendezvous signaling and the relay at the gRPC level, against a real supernode."""

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rpc
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess
from tests.integration.records import device

Code = grpc.StatusCode
FAST = ("--limits-answer-timeout-ms", "1500", "--limits-relay-idle-timeout-seconds", "1.5",
        "--limits-relay-max-bytes", "5000", "--sweep-interval-seconds", "0.2")  # fmt: skip


class Peer:
    """A logged-in user with one registered device and rendezvous/relay stubs."""

    def __init__(self, conn: DirectoryConnection, handle: str) -> None:
        self.conn, self.handle, self.device_id = conn, handle, "dev"
        self.rendezvous = rpc.RendezvousServiceStub(conn.channel)  # type: ignore[no-untyped-call]
        self.relay = rpc.RelayServiceStub(conn.channel)  # type: ignore[no-untyped-call]

    @classmethod
    async def create(cls, conn: DirectoryConnection, handle: str, register: bool = True) -> "Peer":
        peer = cls(conn, handle)
        identity = await new_user(conn, handle)
        if register:
            await conn.register_device(device(identity, handle, peer.device_id, ttl=600))
        return peer

    def listen(self) -> grpc.aio.UnaryStreamCall:
        return self.rendezvous.Listen(
            pb.ListenRequest(device_id=self.device_id), metadata=self.conn.metadata
        )

    async def connect(self, callee: "Peer", payload: bytes = b"offer") -> pb.ConnectResponse:
        response: pb.ConnectResponse = await self.rendezvous.Connect(
            pb.ConnectRequest(handle=callee.handle, device_id=callee.device_id,
                              from_device_id=self.device_id, payload=payload),
            metadata=self.conn.metadata,
        )  # fmt: skip
        return response

    async def answer(self, offer_id: str, payload: bytes = b"", reject: bool = False) -> None:
        await self.rendezvous.Answer(
            pb.AnswerRequest(offer_id=offer_id, payload=payload, reject=reject, reason="busy"),
            metadata=self.conn.metadata,
        )


async def expect(call: object, code: grpc.StatusCode, pattern: str = "") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    assert pattern in (caught.value.details() or ""), caught.value.details()
    return caught.value


async def pair(
    node: SupernodeProcess,
) -> tuple[Peer, Peer, grpc.aio.UnaryStreamCall]:
    alice = await Peer.create(DirectoryConnection(node.grpc_target), "alice")
    bob = await Peer.create(DirectoryConnection(node.grpc_target), "bob")
    listening = bob.listen()
    ready = await listening.read()
    assert ready.HasField("ready") and ready.ready.answer_timeout_ms == 1500
    return alice, bob, listening


async def offer_and_answer(
    alice: Peer, bob: Peer, listening: grpc.aio.UnaryStreamCall
) -> pb.ConnectResponse:
    connecting = asyncio.create_task(alice.connect(bob, b"alice-offer"))
    signal = await listening.read()
    assert signal.offer.from_handle == "alice" and signal.offer.payload == b"alice-offer"
    assert signal.offer.relay_ticket
    await bob.answer(signal.offer.offer_id, b"bob-answer")
    response = await connecting
    assert response.payload == b"bob-answer"
    assert response.relay_ticket == signal.offer.relay_ticket
    return response


async def test_offer_reaches_the_listener_and_the_answer_comes_back(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(*FAST)
    alice, bob, listening = await pair(node)
    await offer_and_answer(alice, bob, listening)

    declined = asyncio.create_task(alice.connect(bob))
    signal = await listening.read()
    await bob.answer(signal.offer.offer_id, reject=True)
    await expect(declined, Code.PERMISSION_DENIED, "declined by the callee: busy")
    await expect(alice.answer(signal.offer.offer_id), Code.NOT_FOUND, "not pending")

    unanswered = asyncio.create_task(alice.connect(bob))
    signal = await listening.read()
    await expect(unanswered, Code.DEADLINE_EXCEEDED, "did not answer in 1500 ms")
    await expect(bob.answer(signal.offer.offer_id), Code.NOT_FOUND, "not pending")

    listening.cancel()


async def test_offers_to_devices_that_are_not_listening_fail_fast(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(*FAST)
    async with (
        DirectoryConnection(node.grpc_target) as a,
        DirectoryConnection(node.grpc_target) as b,
    ):
        alice = await Peer.create(a, "alice")
        bob = await Peer.create(b, "bob")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await expect(alice.connect(bob), Code.FAILED_PRECONDITION, "not listening (offline)")
        assert loop.time() - started < 1.5  # fails fast, long before the answer timeout
        ghost = Peer(b, "ghost")
        await expect(alice.connect(ghost), Code.FAILED_PRECONDITION, "not listening")
        unregistered = await Peer.create(
            DirectoryConnection(node.grpc_target), "carol", register=False
        )
        listen = unregistered.listen()
        await expect(listen.read(), Code.FAILED_PRECONDITION, "no live record")
        await expect(unregistered.connect(bob), Code.FAILED_PRECONDITION, "from_device_id")
        a.token = None
        await expect(alice.connect(bob), Code.UNAUTHENTICATED)


async def test_offer_rate_limit(start_supernode: Callable[..., SupernodeProcess]) -> None:
    node = start_supernode("--limits-offer-burst", "3", "--limits-offer-rate-per-second", "0.01")
    async with (
        DirectoryConnection(node.grpc_target) as a,
        DirectoryConnection(node.grpc_target) as b,
    ):
        alice = await Peer.create(a, "alice")
        bob = await Peer.create(b, "bob")
        for _ in range(3):
            await expect(alice.connect(bob), Code.FAILED_PRECONDITION)
        await expect(alice.connect(bob), Code.RESOURCE_EXHAUSTED, "offer rate limit")


async def test_newer_listen_replaces_older(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(*FAST)
    _, bob, first = await pair(node)
    second = bob.listen()
    assert (await second.read()).HasField("ready")
    await expect(first.read(), Code.ABORTED, "replaced by a newer Listen")
    second.cancel()


class RelayStream:
    def __init__(
        self, peer: Peer, ticket: bytes, device_id: str | None = None, *, batches: bool = False
    ) -> None:
        self.outgoing: asyncio.Queue[pb.RelayFrame | None] = asyncio.Queue()
        join = pb.RelayJoin(ticket=ticket, device_id=device_id or peer.device_id, batches=batches)
        self.outgoing.put_nowait(pb.RelayFrame(join=join))
        self.call = peer.relay.Relay(self._frames(), metadata=peer.conn.metadata)

    async def _frames(self) -> AsyncIterator[pb.RelayFrame]:
        while (frame := await self.outgoing.get()) is not None:
            yield frame

    def send(self, datagram: bytes) -> None:
        self.outgoing.put_nowait(pb.RelayFrame(datagram=datagram))

    async def read(self) -> pb.RelayFrame:
        async with asyncio.timeout(10):
            frame: pb.RelayFrame = await self.call.read()
        return frame


async def test_relay_joins_ticket_holders_and_enforces_limits(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(*FAST)
    alice, bob, listening = await pair(node)
    ticket = (await offer_and_answer(alice, bob, listening)).relay_ticket
    carol = await Peer.create(DirectoryConnection(node.grpc_target), "carol")

    intruder = RelayStream(carol, ticket)
    await expect(intruder.read(), Code.PERMISSION_DENIED, "not issued to this device")
    forged = RelayStream(alice, ticket[:-1] + bytes([ticket[-1] ^ 1]))
    await expect(forged.read(), Code.PERMISSION_DENIED, "not issued by this supernode")

    a, b = RelayStream(alice, ticket), RelayStream(bob, ticket)
    assert (await a.read()).HasField("ready") and (await b.read()).HasField("ready")
    a.send(b"ping")
    assert (await b.read()).datagram == b"ping"
    b.send(b"pong")
    assert (await a.read()).datagram == b"pong"
    assert sample(node.metrics(), "supernode_relay_bytes_total") == 8
    assert sample(node.metrics(), "supernode_relay_sessions") == 1

    again = RelayStream(alice, ticket)
    await expect(again.read(), Code.PERMISSION_DENIED, "already used")

    for _ in range(3):  # 8 + 3 * 1500 = 4508 bytes relayed
        a.send(b"x" * 1500)
        assert len((await b.read()).datagram) == 1500
    a.send(b"x" * 1500)  # 4508 + 1500 > 5000: the session is over
    await expect(a.read(), Code.RESOURCE_EXHAUSTED, "used its 5000 bytes")
    await expect(b.read(), Code.RESOURCE_EXHAUSTED, "used its 5000 bytes")  # both end
    listening.cancel()


async def test_relay_batches_only_for_a_side_that_reads_them(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """A frame of several datagrams reaches a side that joined without ``batches`` as one
    frame per datagram, in order; a side that joined with it may get them grouped."""
    node = start_supernode(*FAST)
    alice, bob, listening = await pair(node)
    ticket = (await offer_and_answer(alice, bob, listening)).relay_ticket
    a, b = RelayStream(alice, ticket, batches=True), RelayStream(bob, ticket)
    ready = await a.read()
    assert ready.ready.batches and (await b.read()).HasField("ready")
    a.outgoing.put_nowait(pb.RelayFrame(datagrams=[b"one", b"two", b"three"]))
    assert [(await b.read()).datagram for _ in range(3)] == [b"one", b"two", b"three"]
    for datagram in (b"four", b"five", b"six"):
        b.send(datagram)
    received: list[bytes] = []
    while len(received) < 3:  # bounded by read()'s timeout
        frame = await a.read()
        assert not frame.HasField("datagram")
        received.extend(frame.datagrams)
    assert received == [b"four", b"five", b"six"]
    assert sample(node.metrics(), "supernode_relay_bytes_total") == 22
    listening.cancel()


async def test_idle_relay_session_is_closed(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(*FAST)
    alice, bob, listening = await pair(node)
    ticket = (await offer_and_answer(alice, bob, listening)).relay_ticket
    a, b = RelayStream(alice, ticket), RelayStream(bob, ticket)
    assert (await a.read()).HasField("ready") and (await b.read()).HasField("ready")
    await expect(a.read(), Code.DEADLINE_EXCEEDED, "idle too long")
    listening.cancel()
