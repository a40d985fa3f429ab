"""Datagram paths between two peers, and the switch that QUIC sees as one path.

QUIC must see one constant peer address whatever carries its packets (a client drops
datagrams from another address; a server treats one as migration), so the choice between
the direct ICE path and the relay happens here, below QUIC. The switch sends on the path
its :class:`~client_sdk.p2p.path_policy.PathPolicy` chooses and receives from all of them;
a lost direct path moves the same QUIC connection to the relay and back (see that module).

Probes share the paths with QUIC as 13-byte datagrams: ``0x00 "SNp"``, a type byte
(request or answer) and a 64-bit token. They never reach QUIC and can never be mistaken for
a QUIC packet (RFC 9000 section 17: every QUIC packet has the fixed bit 0x40 of its first
byte set) nor for STUN (shorter than STUN's 20-byte header, so aioice passes them on).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol

import grpc

from client_sdk.p2p.path_policy import PathChange, PathKind, PathPolicy, Probe
from client_sdk.protocol.relay_frames import take_batch
from client_sdk.protocol.v1 import rendezvous_pb2 as pb

__all__ = ["DatagramPath", "IcePath", "PathClosed", "PathKind", "PathSwitch", "RelayPath"]

_DRAIN_SECONDS = 1.0
_PROBE = struct.Struct("!4sBQ")
_PROBE_MAGIC = b"\x00SNp"
_PROBE_REQUEST, _PROBE_ANSWER = 1, 2


def encode_probe(token: int, *, answer: bool) -> bytes:
    return _PROBE.pack(_PROBE_MAGIC, _PROBE_ANSWER if answer else _PROBE_REQUEST, token)


def decode_probe(datagram: bytes) -> tuple[int, bool] | None:
    """``(token, is_answer)`` for a probe, None for anything else (QUIC's packets)."""
    if len(datagram) != _PROBE.size or not datagram.startswith(_PROBE_MAGIC):
        return None
    _, kind, token = _PROBE.unpack(datagram)
    if kind not in (_PROBE_REQUEST, _PROBE_ANSWER):
        return None
    return token, kind == _PROBE_ANSWER


class DatagramPath(Protocol):
    kind: PathKind

    def send(self, datagram: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


class PathClosed(Exception):
    """The path will carry no more datagrams."""


class IcePath:
    """A connected aioice ``Connection`` (one component)."""

    kind = PathKind.DIRECT

    def __init__(self, connection: object) -> None:
        self._connection = connection
        self._sends: set[asyncio.Task[None]] = set()

    def send(self, datagram: bytes) -> None:
        """Send now, without a task per datagram.

        aioice's ``send`` is a coroutine that never suspends (it ends in the transport's
        ``sendto``), so stepping it once sends the datagram; a task per datagram cost more
        than QUIC's own work per packet. Should a future aioice suspend in it, the rest
        runs as a task, as before.
        """
        coroutine = self._connection.send(datagram)  # type: ignore[attr-defined]
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return
        except ConnectionError:
            return  # not connected (any more): a lost datagram; QUIC retransmits
        task = asyncio.ensure_future(_resumed(coroutine, awaited))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            pass  # a lost datagram; QUIC retransmits

    async def recv(self) -> bytes:
        try:
            data: bytes = await self._connection.recv()  # type: ignore[attr-defined]
        except ConnectionError as exc:
            raise PathClosed(str(exc)) from exc
        return data

    async def close(self) -> None:
        # Let queued datagrams (QUIC's CONNECTION_CLOSE among them) leave before the socket.
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=_DRAIN_SECONDS)
        for task in list(self._sends):
            task.cancel()
        await self._connection.close()  # type: ignore[attr-defined]


async def _resumed(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Run a coroutine on from where its first step suspended, as a task would: wait for
    what it yielded (a future, or None for a bare yield), then step it again."""
    while True:
        if awaited is None:
            await asyncio.sleep(0)
        else:
            await asyncio.wait([awaited])
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return


class _Outgoing:
    """Datagrams waiting for the relay stream, taken a batch at a time (see
    :mod:`client_sdk.protocol.relay_frames`), then the end of the stream."""

    def __init__(self) -> None:
        self._queue: deque[bytes] = deque()
        self._ended = False
        self._news = asyncio.Event()
        self.batches = False  # the relay reads RelayFrame.datagrams

    def put(self, datagram: bytes) -> None:
        if not self._ended:
            self._queue.append(datagram)
            self._news.set()

    def end(self) -> None:
        self._ended = True
        self._news.set()

    async def take(self) -> list[bytes]:
        """What is queued, up to a batch; empty once ended (after the rest was taken)."""
        while not self._queue:
            if self._ended:
                return []
            self._news.clear()
            await self._news.wait()
        return take_batch(self._queue)


class RelayPath:
    """Datagrams through the supernode's relay stream (``RelayService.Relay``)."""

    kind = PathKind.RELAY

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall,
        outgoing: _Outgoing,
        drained: asyncio.Event,
        idle_timeout: float | None = None,
    ) -> None:
        self._call = call
        self._outgoing = outgoing
        self._drained = drained
        self._received: deque[bytes] = deque()  # the rest of the last frame read
        # The relay ends a session idle for this long (announced in RelayReady).
        self.idle_timeout = idle_timeout

    @classmethod
    async def join(
        cls,
        stub: object,
        ticket: bytes,
        device_id: str,
        metadata: tuple[tuple[str, str], ...],
        *,
        within: float,
    ) -> RelayPath:
        """Join the relay session and wait until the peer has joined too."""
        outgoing = _Outgoing()
        drained = asyncio.Event()

        async def frames() -> AsyncIterator[pb.RelayFrame]:
            yield pb.RelayFrame(join=pb.RelayJoin(ticket=ticket, device_id=device_id, batches=True))
            while batch := await outgoing.take():
                if outgoing.batches:
                    yield pb.RelayFrame(datagrams=batch)
                else:
                    for datagram in batch:
                        yield pb.RelayFrame(datagram=datagram)
            drained.set()  # gRPC asks for the next frame only once the last one is written

        call = stub.Relay(frames(), metadata=metadata)  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(within):
                first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF or not first.HasField("ready"):
            call.cancel()
            raise PathClosed("relay: the session ended before both peers joined")
        outgoing.batches = first.ready.batches  # the relay reads frames of several datagrams
        idle_ms = first.ready.idle_timeout_ms
        return cls(call, outgoing, drained, idle_ms / 1000 if idle_ms > 0 else None)

    def send(self, datagram: bytes) -> None:
        self._outgoing.put(datagram)

    async def recv(self) -> bytes:
        while not self._received:
            try:
                frame = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                raise PathClosed(f"relay: {exc.code().name}: {exc.details()}") from exc
            if frame is grpc.aio.EOF:
                raise PathClosed("relay: the session ended")
            if frame.HasField("datagram"):
                self._received.append(bytes(frame.datagram))
            self._received.extend(frame.datagrams)
        return self._received.popleft()

    async def close(self) -> None:
        # Half-close after the queued datagrams (QUIC's CONNECTION_CLOSE among them) and let
        # the relay end the call: the relay forwards everything it read before our end of
        # stream, so the peer learns at once that the connection ended. Cancelling instead
        # (RST_STREAM) may discard datagrams the relay has not read yet.
        self._outgoing.end()
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                await self._call_ended()
        self._call.cancel()

    async def _call_ended(self) -> None:
        await self._drained.wait()
        await self._call.code()


class PathSwitch:
    """Many datagram paths presented as one; see the module docstring.

    The asyncio shell around :class:`PathPolicy`: it answers the peer's probes, sends the
    policy's probes, feeds it answers, peer traffic and timer ticks, and sends QUIC's
    datagrams on the path it chose. Every change of path is kept in ``changes`` and told to
    each of ``listeners``. When the last path ends, ``on_lost`` tells the connection at once
    rather than leaving it to QUIC's idle timeout.
    """

    def __init__(
        self,
        on_datagram: Callable[[bytes], None],
        on_lost: Callable[[str], None] = lambda reason: None,
        *,
        policy: PathPolicy | None = None,
    ) -> None:
        self._on_datagram = on_datagram
        self._on_lost = on_lost
        self._policy = PathPolicy() if policy is None else policy
        self._loop = asyncio.get_running_loop()
        self._paths: dict[PathKind, DatagramPath] = {}
        self._all: list[DatagramPath] = []
        self._readers: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._closing = False
        self.changes: list[PathChange] = []
        self.listeners: list[Callable[[PathChange], None]] = []

    @property
    def kind(self) -> PathKind | None:
        """The path QUIC's datagrams leave by; None once every path ended."""
        return None if self._closing else self._policy.active

    @property
    def active(self) -> DatagramPath | None:
        kind = self.kind
        return None if kind is None else self._paths.get(kind)

    def add(self, path: DatagramPath, *, activate: bool) -> None:
        """Add a path; ``activate``: it is proven (it just carried a round trip).

        The policy, not the order of adding, decides which path carries the connection:
        a proven direct path, else the relay.
        """
        if self._closing:
            self._all.append(path)  # closed with the rest; a late relay joining, say
            self._readers.append(asyncio.create_task(path.close()))
            return
        self._paths[path.kind] = path
        self._all.append(path)
        self._readers.append(asyncio.create_task(self._read(path)))
        idle = getattr(path, "idle_timeout", None)
        keepalive = None if idle is None else idle / 3
        self._policy.add(path.kind, self._loop.time(), proven=activate, keepalive=keepalive)
        self._service()

    async def _read(self, path: DatagramPath) -> None:
        try:
            while True:
                self._received(path, await path.recv())
        except PathClosed as exc:
            self._path_ended(path, str(exc))

    def _received(self, path: DatagramPath, datagram: bytes) -> None:
        now = self._loop.time()
        probe = decode_probe(datagram)
        if probe is None:
            # The policy first, so that QUIC's reply (an ACK) leaves by the path it picks.
            self._policy.peer_sent(path.kind, now)
            self._service()
            self._on_datagram(datagram)
            return
        token, is_answer = probe
        if is_answer:
            self._policy.probe_answered(path.kind, token, now)
            self._service()
        else:
            path.send(encode_probe(token, answer=True))  # on the path it came by

    def _path_ended(self, path: DatagramPath, reason: str) -> None:
        if self._paths.get(path.kind) is path:
            del self._paths[path.kind]
            self._policy.remove(path.kind, self._loop.time())
            self._service()
        if not self._paths and not self._closing:
            self._on_lost(reason)

    def _on_timer(self) -> None:
        self._timer = None
        self._policy.handle_timer(self._loop.time())
        self._service()

    def _service(self) -> None:
        """Carry out what the policy asked for: probes, change notices, the next tick."""
        if self._closing:
            return
        for probe in self._policy.probes_to_send():
            self._send_probe(probe)
        while (change := self._policy.next_event()) is not None:
            self.changes.append(change)
            for listener in list(self.listeners):
                listener(change)
        at = self._policy.get_timer()
        if self._timer is not None:
            if at == self._timer_at:
                return  # unchanged, as for nearly every datagram of a transfer
            self._timer.cancel()
            self._timer = None
        if at is not None:
            # The deadline is kept beside the handle: uvloop returns a plain Handle,
            # without when(), for a deadline already past.
            self._timer = self._loop.call_at(at, self._on_timer)
            self._timer_at = at

    def _send_probe(self, probe: Probe) -> None:
        path = self._paths.get(probe.kind)
        if path is not None:
            path.send(encode_probe(probe.token, answer=False))

    def send(self, datagram: bytes) -> None:
        path = self.active
        if path is not None:
            path.send(datagram)

    async def close(self) -> None:
        # Paths first, readers after: cancelling a pending gRPC read cancels the whole relay
        # call, and with it the datagrams still queued for the peer.
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for path in self._all:
            with contextlib.suppress(Exception):
                await path.close()
        for reader in self._readers:
            reader.cancel()
