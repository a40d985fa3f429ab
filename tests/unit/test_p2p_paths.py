"""The path switch: follows the peer's path, fails over, reports the loss of the last path,
and closes paths before it stops reading them."""

from __future__ import annotations

import asyncio

from client_sdk.p2p.paths import IcePath, PathClosed, PathKind, PathSwitch


class FakePath:
    def __init__(self, kind: PathKind) -> None:
        self.kind = kind
        self.sent: list[bytes] = []
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reading = False
        self.read_while_closing: bool | None = None

    def send(self, datagram: bytes) -> None:
        self.sent.append(datagram)

    async def recv(self) -> bytes:
        self.reading = True
        try:
            item = await self.inbox.get()
        finally:
            self.reading = False
        if item is None:
            raise PathClosed(f"{self.kind.value} ended")
        return item

    async def close(self) -> None:
        self.read_while_closing = self.reading
        self.inbox.put_nowait(None)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_follows_the_path_the_peer_uses() -> None:
    received: list[bytes] = []
    switch = PathSwitch(received.append)
    direct, relay = FakePath(PathKind.DIRECT), FakePath(PathKind.RELAY)
    switch.add(direct, activate=True)
    switch.add(relay, activate=False)
    switch.send(b"a")
    relay.inbox.put_nowait(b"from relay")
    await settle()
    switch.send(b"b")
    assert direct.sent == [b"a"] and relay.sent == [b"b"]
    assert received == [b"from relay"] and switch.kind is PathKind.RELAY
    await switch.close()


async def test_an_ended_path_hands_over_and_the_last_one_reports_the_loss() -> None:
    lost: list[str] = []
    switch = PathSwitch(lambda datagram: None, lost.append)
    direct, relay = FakePath(PathKind.DIRECT), FakePath(PathKind.RELAY)
    switch.add(relay, activate=False)
    switch.add(direct, activate=True)
    direct.inbox.put_nowait(None)
    await settle()
    assert switch.kind is PathKind.RELAY and lost == []
    relay.inbox.put_nowait(None)
    await settle()
    assert switch.kind is None and lost == ["relay ended"]
    await switch.close()
    assert lost == ["relay ended"]


async def test_close_closes_paths_while_still_reading_and_reports_no_loss() -> None:
    lost: list[str] = []
    switch = PathSwitch(lambda datagram: None, lost.append)
    relay = FakePath(PathKind.RELAY)
    switch.add(relay, activate=True)
    await settle()
    await switch.close()
    await settle()
    # A relay read cancelled before the close would cancel the gRPC call and the queued
    # CONNECTION_CLOSE with it.
    assert relay.read_while_closing is True
    assert lost == [] and switch.kind is None


class FakeIce:
    """An aioice ``Connection`` stand-in: ``send`` may first wait for ``gate``, or fail."""

    def __init__(self, gate: asyncio.Event | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionError("Cannot send data, not connected")
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(data)

    async def close(self) -> None:
        pass


async def test_ice_sends_at_once_and_finishes_a_send_that_waits() -> None:
    """aioice's send never suspends today: the datagram leaves within ``send``. One that
    suspends is carried on by a task; one that fails is a lost datagram, not an error."""
    ice = FakeIce()
    IcePath(ice).send(b"now")
    assert ice.sent == [b"now"]
    IcePath(FakeIce(fail=True)).send(b"lost")  # raises nothing
    gate = asyncio.Event()
    waiting = FakeIce(gate)
    path = IcePath(waiting)
    path.send(b"later")
    assert waiting.sent == []
    gate.set()
    await settle()
    assert waiting.sent == [b"later"]
    await path.close()
