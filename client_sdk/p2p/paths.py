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

from supernode.v1 import rendezvous_pb2 as pb

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
        # Half-close after the queued datagrams (QUIC's CONNECTION_CLOSE among them), so the
        # peer learns at once that the connection ended instead of at its idle timeout.
        self._outgoing.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), _DRAIN_SECONDS)
        self._call.cancel()


class PathSwitch:
    """Many datagram paths presented as one; see the module docstring."""

    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self._on_datagram = on_datagram
        self._paths: list[DatagramPath] = []
        self._readers: list[asyncio.Task[None]] = []
        self.active: DatagramPath | None = None

    @property
    def kind(self) -> PathKind | None:
        return None if self.active is None else self.active.kind

    def add(self, path: DatagramPath, *, activate: bool) -> None:
        self._paths.append(path)
        self._readers.append(asyncio.create_task(self._read(path)))
        if activate or self.active is None:
            self.active = path

    async def _read(self, path: DatagramPath) -> None:
        with contextlib.suppress(PathClosed, asyncio.CancelledError):
            while True:
                datagram = await path.recv()
                self.active = path  # follow the path the peer is using
                self._on_datagram(datagram)

    def send(self, datagram: bytes) -> None:
        if self.active is not None:
            self.active.send(datagram)

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for path in self._paths:
            with contextlib.suppress(Exception):
                await path.close()
