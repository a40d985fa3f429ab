"""Datagram paths between two peers, and the switch that QUIC sees as one path.

QUIC must see one constant peer address whatever carries its packets (a client drops
datagrams from another address; a server treats one as migration), so the choice between
the direct ICE path and the relay happens here, below QUIC. The switch sends on its
active path and receives from all of them; a datagram arriving on a path makes that path
active, so the callee follows whatever path the caller chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc

from client_sdk.protocol.v1 import rendezvous_pb2 as pb

_DRAIN_SECONDS = 1.0


class PathKind(enum.Enum):
    DIRECT = "direct"
    RELAY = "relay"


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
        # aioice's send is a coroutine; QUIC's output is fire-and-forget datagrams.
        task = asyncio.ensure_future(self._connection.send(datagram))  # type: ignore[attr-defined]
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


class RelayPath:
    """Datagrams through the supernode's relay stream (``RelayService.Relay``)."""

    kind = PathKind.RELAY

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall,
        outgoing: asyncio.Queue[bytes | None],
        drained: asyncio.Event,
    ) -> None:
        self._call = call
        self._outgoing = outgoing
        self._drained = drained

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
        outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        drained = asyncio.Event()

        async def frames() -> AsyncIterator[pb.RelayFrame]:
            yield pb.RelayFrame(join=pb.RelayJoin(ticket=ticket, device_id=device_id))
            while (datagram := await outgoing.get()) is not None:
                yield pb.RelayFrame(datagram=datagram)
            drained.set()  # gRPC asks for the next frame only once the last one is written

        call = stub.Relay(frames(), metadata=metadata)  # type: ignore[attr-defined]
        try:
            first = await asyncio.wait_for(call.read(), within)
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF or not first.HasField("ready"):
            call.cancel()
            raise PathClosed("relay: the session ended before both peers joined")
        return cls(call, outgoing, drained)

    def send(self, datagram: bytes) -> None:
        self._outgoing.put_nowait(datagram)

    async def recv(self) -> bytes:
        while True:
            try:
                frame = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                raise PathClosed(f"relay: {exc.code().name}: {exc.details()}") from exc
            if frame is grpc.aio.EOF:
                raise PathClosed("relay: the session ended")
            if frame.HasField("datagram"):
                return bytes(frame.datagram)

    async def close(self) -> None:
        # Half-close after the queued datagrams (QUIC's CONNECTION_CLOSE among them) and let
        # the relay end the call: the relay forwards everything it read before our end of
        # stream, so the peer learns at once that the connection ended. Cancelling instead
        # (RST_STREAM) may discard datagrams the relay has not read yet.
        self._outgoing.put_nowait(None)
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            await asyncio.wait_for(self._call_ended(), _DRAIN_SECONDS)
        self._call.cancel()

    async def _call_ended(self) -> None:
        await self._drained.wait()
        await self._call.code()


class PathSwitch:
    """Many datagram paths presented as one; see the module docstring.

    A path that ends (the relay session closed, ICE consent lost) hands over to a live one;
    when the last one ends, ``on_lost`` tells the connection at once rather than leaving it
    to QUIC's idle timeout.
    """

    def __init__(
        self,
        on_datagram: Callable[[bytes], None],
        on_lost: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._on_datagram = on_datagram
        self._on_lost = on_lost
        self._paths: list[DatagramPath] = []
        self._live: list[DatagramPath] = []
        self._readers: list[asyncio.Task[None]] = []
        self._closing = False
        self.active: DatagramPath | None = None

    @property
    def kind(self) -> PathKind | None:
        return None if self.active is None else self.active.kind

    def add(self, path: DatagramPath, *, activate: bool) -> None:
        self._paths.append(path)
        self._live.append(path)
        self._readers.append(asyncio.create_task(self._read(path)))
        if activate or self.active is None:
            self.active = path

    async def _read(self, path: DatagramPath) -> None:
        try:
            while True:
                datagram = await path.recv()
                self.active = path  # follow the path the peer is using
                self._on_datagram(datagram)
        except PathClosed as exc:
            self._path_ended(path, str(exc))

    def _path_ended(self, path: DatagramPath, reason: str) -> None:
        self._live.remove(path)
        if self.active is path:
            self.active = self._live[-1] if self._live else None
        if not self._live and not self._closing:
            self._on_lost(reason)

    def send(self, datagram: bytes) -> None:
        if self.active is not None:
            self.active.send(datagram)

    async def close(self) -> None:
        # Paths first, readers after: cancelling a pending gRPC read cancels the whole relay
        # call, and with it the datagrams still queued for the peer.
        self._closing = True
        for path in self._paths:
            with contextlib.suppress(Exception):
                await path.close()
        for reader in self._readers:
            reader.cancel()
        self.active = None
