"""One QUIC connection over two path switches joined by in-memory links that can be cut:
it moves to the relay when direct goes silent and back when direct heals, without a reset
(the policy's timing shortened; the NAT lab runs the same with real sockets and NATs)."""

from __future__ import annotations

import asyncio
import random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.p2p.certificates import self_signed
from client_sdk.p2p.connection import PeerConnection, PeerIdentity
from client_sdk.p2p.path_policy import PathChangeReason, PathKind, PathPolicy, PathPolicySettings
from client_sdk.p2p.paths import PathClosed, PathSwitch, decode_probe, encode_probe
from client_sdk.p2p.quic import QuicSession, client_configuration, server_configuration

FAST = PathPolicySettings(
    probe_interval=0.05, dead_after=0.15, suspect_after=0.075, recover_after=2, relay_keepalive=0.5
)


class Link:
    """Both ends of one path; ``working`` False drops every datagram both ways."""

    def __init__(self, kind: PathKind) -> None:
        self.working = True
        self.ends = (LinkEnd(self, kind), LinkEnd(self, kind))
        self.ends[0].other, self.ends[1].other = self.ends[1], self.ends[0]


class LinkEnd:
    def __init__(self, link: Link, kind: PathKind) -> None:
        self.link = link
        self.kind = kind
        self.other: LinkEnd | None = None
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.carried = 0  # QUIC datagrams (not probes) sent through this end

    def send(self, datagram: bytes) -> None:
        if decode_probe(datagram) is None:
            self.carried += 1
        if self.link.working and self.other is not None:
            self.other.inbox.put_nowait(datagram)

    async def recv(self) -> bytes:
        item = await self.inbox.get()
        if item is None:
            raise PathClosed(f"{self.kind.value} closed")
        return item

    async def close(self) -> None:
        self.inbox.put_nowait(None)


async def eventually(check: object, what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.01)


async def echo_streams(connection: PeerConnection) -> None:
    while True:
        reader, writer = await connection.accept_stream()
        writer.write((await reader.read())[::-1])
        writer.write_eof()


async def round_trip(connection: PeerConnection, payload: bytes) -> bytes:
    reader, writer = connection.open_stream()
    writer.write(payload)
    writer.write_eof()
    async with asyncio.timeout(10):
        return await reader.read()


async def connected_pair(
    direct: Link, relay: Link
) -> tuple[PeerConnection, PeerConnection, list[QuicSession]]:
    key = Ed25519PrivateKey.generate()
    certificate = self_signed(key)
    sessions: dict[str, QuicSession] = {}

    def to_server(datagram: bytes) -> None:
        if "server" in sessions:
            sessions["server"].receive(datagram)
        else:
            sessions["server"] = QuicSession.accept(
                server_configuration(certificate, key), datagram, server_switch.send
            )

    client_switch = PathSwitch(
        lambda d: sessions["client"].receive(d), policy=PathPolicy(FAST, random.Random(1))
    )
    server_switch = PathSwitch(to_server, policy=PathPolicy(FAST, random.Random(2)))
    for switch, index in ((client_switch, 0), (server_switch, 1)):
        switch.add(direct.ends[index], activate=True)
        switch.add(relay.ends[index], activate=False)
    sessions["client"] = QuicSession.connect(client_configuration(certificate), client_switch.send)
    async with asyncio.timeout(10):
        await sessions["client"].handshake
    await eventually(lambda: "server" in sessions, "the server session")
    async with asyncio.timeout(10):
        await sessions["server"].handshake
    peer = PeerIdentity("x", "dev", b"")
    caller = PeerConnection(
        peer, sessions["client"], client_switch, setup_seconds=0.0, initiated=True
    )
    callee = PeerConnection(
        peer, sessions["server"], server_switch, setup_seconds=0.0, initiated=False
    )
    return caller, callee, [sessions["client"], sessions["server"]]


async def test_probes_are_answered_on_their_own_path_and_never_reach_quic() -> None:
    received: list[bytes] = []
    switch = PathSwitch(received.append)
    direct, relay = Link(PathKind.DIRECT), Link(PathKind.RELAY)
    switch.add(direct.ends[0], activate=True)
    switch.add(relay.ends[0], activate=False)
    relay.ends[0].inbox.put_nowait(encode_probe(42, answer=False))
    async with asyncio.timeout(5):
        answer = await relay.ends[1].inbox.get()
    assert answer is not None and decode_probe(answer) == (42, True)
    assert received == [] and switch.kind is PathKind.DIRECT  # a probe is not peer traffic
    await switch.close()


def test_probes_cannot_be_taken_for_quic_packets() -> None:
    probe = encode_probe(2**64 - 1, answer=True)
    assert probe[0] & 0x40 == 0  # every QUIC packet sets the fixed bit
    assert len(probe) < 20  # shorter than any STUN message
    assert decode_probe(b"\x40" + probe[1:]) is None
    assert decode_probe(probe + b"x") is None


async def test_the_connection_survives_losing_its_direct_path_and_returns_to_it() -> None:
    direct, relay = Link(PathKind.DIRECT), Link(PathKind.RELAY)
    caller, callee, sessions = await connected_pair(direct, relay)
    echo = asyncio.create_task(echo_streams(callee))
    try:
        assert caller.path == callee.path == "direct"
        assert await round_trip(caller, b"before") == b"erofeb"
        relayed_before = relay.ends[0].carried

        direct.working = False
        reply = asyncio.create_task(round_trip(caller, b"after the cut"))  # opened after it
        async with asyncio.timeout(10):
            assert await reply == b"tuc eht retfa"
        await eventually(lambda: caller.path == callee.path == "relay", "both on the relay")
        assert relay.ends[0].carried > relayed_before  # the stream did cross the relay
        left = [c for c in caller.path_changes if c.old is PathKind.DIRECT]
        assert left and left[0].new is PathKind.RELAY
        assert left[0].reason in (PathChangeReason.DIRECT_SILENT, PathChangeReason.PEER_MOVED)

        direct.working = True
        await eventually(lambda: caller.path == callee.path == "direct", "both back on direct")
        assert caller.path_changes[-1].reason is PathChangeReason.DIRECT_ANSWERS
        direct_before = direct.ends[0].carried
        assert await round_trip(caller, b"healed") == b"delaeh"
        assert direct.ends[0].carried > direct_before
        assert not any(session.closed.done() for session in sessions)  # never reset
    finally:
        echo.cancel()
        await caller.close()
        await callee.close()


async def test_wait_path_change_reports_the_next_move() -> None:
    direct, relay = Link(PathKind.DIRECT), Link(PathKind.RELAY)
    caller, callee, _ = await connected_pair(direct, relay)
    try:
        waiting = asyncio.create_task(caller.wait_path_change())
        await asyncio.sleep(0)
        assert not waiting.done()
        direct.working = False
        async with asyncio.timeout(10):
            change = await waiting
        assert (change.old, change.new) == (PathKind.DIRECT, PathKind.RELAY)
        assert change == caller.path_changes[-1]
        assert change.waited_seconds is not None and change.waited_seconds > 0
    finally:
        await caller.close()
        await callee.close()
