"""``RendezvousService`` (signaling) and ``RelayService`` over the rendezvous core."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from client_sdk.protocol.relay_frames import take_batch
from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from client_sdk.protocol.validation import (
    ANSWER_REASON_MAX_CHARS,
    check_device_id,
    check_display_name,
    check_handle,
)
from supernode.directory.privacy import Privacy
from supernode.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    Reason,
    SupernodeError,
)
from supernode.metrics import Metrics
from supernode.overload import Shedding
from supernode.rendezvous.relay import RelayHub, RelaySession, RelaySide
from supernode.rendezvous.signaling import Answer, Switchboard, not_listening
from supernode.rendezvous.tickets import Endpoint
from supernode.rpc.auth import session_of
from supernode.rpc.handlers import (
    ServiceHandlers,
    server_stream_handler,
    stream_stream_handler,
    unary_handler,
)
from supernode.rpc.source import RateGates
from supernode.sessions import SessionAuthority

RENDEZVOUS_SERVICE = "supernode.v1.RendezvousService"
RELAY_SERVICE = "supernode.v1.RelayService"
Context: TypeAlias = grpc.aio.ServicerContext

# Datagrams buffered towards one side before new ones are dropped, in count and in bytes
# (a datagram may be up to a message's 64 KB: 256 of them would be 16 MB per side).
_RELAY_QUEUE = 256
_RELAY_QUEUE_BYTES = 256 << 10


Deliver = Callable[[Endpoint, Endpoint, bytes], Awaitable[pb.ConnectResponse]]


class OfferRouter(Protocol):
    """Where offers go in a cluster: the node the callee's device is attached to."""

    async def route(
        self, caller: Endpoint, callee: Endpoint, payload: bytes, here: Deliver
    ) -> pb.ConnectResponse:
        """Deliver on the callee's node (``here`` when it is this one) and return its answer."""
        ...


class RendezvousApi:
    def __init__(
        self,
        switchboard: Switchboard,
        relay: RelayHub,
        sessions: SessionAuthority,
        metrics: Metrics,
        clock_ms: Callable[[], int],
        router: OfferRouter | None = None,
        shedding: Shedding | None = None,
        gates: RateGates | None = None,
        *,
        privacy: Privacy,
    ) -> None:
        """``gates``: the process's rate limits; ``privacy``: an offer from a caller the
        callee's settings refuse is answered as if the device were not listening, before it
        reaches the callee."""
        gates = gates or RateGates.off()
        self._listen_gate = gates.gate("Listen")
        self._connect_gate = gates.gate("Connect")
        self._relay_gate = gates.gate("Relay")
        self._privacy = privacy
        self._router = router
        self._shedding = shedding
        self._switchboard = switchboard
        self._relay = relay
        self._sessions = sessions
        self._metrics = metrics
        self._clock_ms = clock_ms

    def method_handlers(self) -> ServiceHandlers:
        m, s = self._metrics, self._shedding
        return {
            RENDEZVOUS_SERVICE: {
                "Listen": server_stream_handler("Listen", pb.ListenRequest, self.listen, m, s),
                "Connect": unary_handler("Connect", pb.ConnectRequest, self.connect, m, s),
                "Answer": unary_handler("Answer", pb.AnswerRequest, self.answer, m, s),
            },
            RELAY_SERVICE: {"Relay": stream_stream_handler("Relay", self.relay, m)},
        }

    # ------------------------------------------------------------------ signaling

    async def listen(self, request: pb.ListenRequest, context: Context) -> AsyncIterator[bytes]:
        session = session_of(context, self._sessions)
        self._listen_gate.check(context, session.handle)
        check_device_id("device_id", request.device_id)
        offers: deque[pb.IncomingOffer] = deque()
        ended: list[SupernodeError] = []
        news = asyncio.Event()

        def deliver(offer: pb.IncomingOffer) -> None:
            offers.append(offer)
            news.set()

        def end(error: SupernodeError) -> None:
            # Cut off, replaced or shutting down, perhaps while gRPC is stuck writing to a
            # client that does not read: the offers waiting here are dropped now (the
            # switchboard has let go of the listener); the stream ends with the error once
            # gRPC takes the message in hand (see rpc.watch for why not sooner).
            ended.append(error)
            offers.clear()
            news.set()

        listener = self._switchboard.listen(
            Endpoint(session.handle, request.device_id), deliver, end
        )
        try:
            yield pb.Signal(
                ready=pb.ListenReady(answer_timeout_ms=self._switchboard.answer_timeout_ms)
            ).SerializeToString()
            while True:
                await news.wait()
                news.clear()
                if ended:  # cut off, replaced or shutting down: what waits is dropped
                    raise ended[0]
                while offers:
                    offer = offers.popleft()
                    yield pb.Signal(offer=offer).SerializeToString()
                    self._switchboard.written(listener, offer.ByteSize())
                    if ended:
                        raise ended[0]
        finally:
            self._switchboard.stop_listening(listener)

    async def connect(self, request: pb.ConnectRequest, context: Context) -> pb.ConnectResponse:
        session = session_of(context, self._sessions)
        self._connect_gate.check(context, session.handle)
        check_handle("handle", request.handle)
        check_device_id("device_id", request.device_id)
        check_device_id("from_device_id", request.from_device_id)
        caller = Endpoint(session.handle, request.from_device_id)
        callee = Endpoint(request.handle, request.device_id)
        self._switchboard.admit(session.session_id, caller)
        if not self._privacy.may_see(caller.handle, callee.handle):
            self._metrics.count_hidden("Connect")
            raise not_listening(callee)
        if self._router is not None:
            return await self._router.route(caller, callee, request.payload, self.deliver)
        return await self.deliver(caller, callee, request.payload)

    async def deliver(
        self, caller: Endpoint, callee: Endpoint, payload: bytes
    ) -> pb.ConnectResponse:
        """Offer to a callee listening on this node and wait for its answer (the offer was
        admitted here, or by the node the caller is attached to)."""
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        def resolve(answer: Answer) -> None:
            if not answered.done():
                answered.set_result(answer)

        pending = self._switchboard.deliver(caller, callee, payload, resolve)
        try:
            async with asyncio.timeout(self._switchboard.answer_timeout_ms / 1000):
                answer = await answered
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"connect: {callee.handle}/{callee.device_id} did not answer in "
                f"{self._switchboard.answer_timeout_ms} ms",
                reason=Reason.CALLEE_NO_ANSWER,
            ) from exc
        finally:
            self._switchboard.forget(pending.offer_id)
        if answer.reject:
            raise PermissionDenied(
                f"connect: declined by the callee: {answer.reason[:200]}",
                reason=Reason.CALL_DECLINED,
            )
        return pb.ConnectResponse(
            offer_id=pending.offer_id, payload=answer.payload, relay_ticket=pending.relay_ticket
        )

    def answer(self, request: pb.AnswerRequest, context: Context) -> pb.AnswerResponse:
        session = session_of(context, self._sessions)
        # Shown to the caller (in its PERMISSION_DENIED): display text, as short as a name.
        check_display_name("reason", request.reason, ANSWER_REASON_MAX_CHARS)
        self._switchboard.answer(
            session.handle,
            request.offer_id,
            Answer(request.payload, request.reject, request.reason),
        )
        return pb.AnswerResponse()

    # ------------------------------------------------------------------ relay

    async def relay(self, frames: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        session = session_of(context, self._sessions)
        self._relay_gate.check(context, session.handle)
        first = await _next_frame(frames)
        if first is None or not first.HasField("join"):
            raise InvalidArgument(
                "join: the first frame must be a RelayJoin", reason=Reason.INVALID_FIELD
            )
        check_device_id("join.device_id", first.join.device_id)
        batches = first.join.batches  # this side reads frames of several datagrams
        outbound: deque[bytes] = deque()
        queued = [0]  # bytes in outbound
        ended: list[SupernodeError | None] = []
        paired: list[bool] = []
        news = asyncio.Event()

        def ready() -> None:
            paired.append(True)
            news.set()

        def send(datagram: bytes) -> None:
            # Beyond either bound, drop: QUIC recovers.
            if len(outbound) < _RELAY_QUEUE and queued[0] + len(datagram) <= _RELAY_QUEUE_BYTES:
                outbound.append(datagram)
                queued[0] += len(datagram)
                news.set()

        def end(error: SupernodeError | None) -> None:
            ended.append(error)
            outbound.clear()  # what waits for a side that may not read is dropped now
            queued[0] = 0
            news.set()

        hub = self._relay
        relay, index = hub.join(
            first.join.ticket,
            session.handle,
            first.join.device_id,
            RelaySide(ready, send, end),
            self._clock_ms(),
        )
        reader = asyncio.create_task(self._pump(frames, relay, index, end))
        announced = False
        try:
            while True:
                if paired and not announced:
                    announced = True
                    yield pb.RelayFrame(
                        ready=pb.RelayReady(
                            max_bytes=hub.limits.max_bytes,
                            max_bytes_per_second=hub.limits.max_bytes_per_second,
                            idle_timeout_ms=int(hub.limits.idle_timeout_seconds * 1000),
                            batches=True,
                        )
                    ).SerializeToString()
                while outbound:
                    batch = take_batch(outbound) if batches else [outbound.popleft()]
                    queued[0] -= sum(map(len, batch))
                    if batches:
                        frame = pb.RelayFrame(datagrams=batch)
                    else:
                        frame = pb.RelayFrame(datagram=batch[0])
                    yield frame.SerializeToString()
                if ended:
                    if ended[0] is not None:
                        raise ended[0]
                    return
                await news.wait()
                news.clear()
        finally:
            reader.cancel()
            # The other side ends for the same reason (limits), or cleanly if this one left.
            hub.leave(relay, index, ended[0] if ended else None)

    async def _pump(
        self,
        frames: AsyncIterator[bytes],
        relay: RelaySession,
        index: int,
        end: Callable[[SupernodeError | None], None],
    ) -> None:
        """Read this side's datagrams and hand them to the other side."""
        try:
            while True:
                frame = await _next_frame(frames)
                if frame is None:
                    end(None)  # this side closed its half: the session is over
                    return
                if frame.HasField("datagram"):
                    self._relay.forward(relay, index, frame.datagram)
                for datagram in frame.datagrams:
                    self._relay.forward(relay, index, datagram)
        except SupernodeError as error:
            end(error)


async def _next_frame(frames: AsyncIterator[bytes]) -> pb.RelayFrame | None:
    try:
        raw = await anext(frames)
    except StopAsyncIteration:
        return None
    try:
        return pb.RelayFrame.FromString(raw)
    except DecodeError as exc:
        raise InvalidArgument(
            "request: not a serialized supernode.v1.RelayFrame", reason=Reason.MALFORMED_REQUEST
        ) from exc
