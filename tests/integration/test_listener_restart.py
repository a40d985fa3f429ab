"""The P2P listener outlives its supernode: restarts (graceful and ``kill -9``) and a target
that goes away for good, with callers reaching the device again once it listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from client_sdk import Client, P2PSettings, PeerConnection
from tests.integration.p2p_support import accept_any, p2p_client, until_listening
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import FAST_LEASES, StartSupernode, restart_on_same_port
from tests.integration.tap import RecordingProxy
from tests.integration.waiting import eventually

RELAY_ONLY = P2PSettings(direct=False)  # no STUN: the restarted node's STUN port moves


class Accepting:
    """Iterates ``client.incoming()`` in the background, as one app would for hours."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.accepted: asyncio.Queue[PeerConnection] = asyncio.Queue()
        self.task = asyncio.create_task(self._accept_all())

    async def _accept_all(self) -> None:
        async for connection in self.client.incoming(accept_any):
            self.accepted.put_nowait(connection)

    async def ready(self) -> None:
        await until_listening(self.client, self.task)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def stopped_listening(client: Client) -> None:
    async def broken() -> bool:
        return not client.listener.ready.is_set()

    await eventually(broken, what="the listener noticing its stream broke")


async def connect_and_talk(caller: Client, callee: Accepting, marker: bytes) -> None:
    """One connection from ``caller`` to the listening device, one stream echoed back."""
    async with asyncio.timeout(30):
        connection = await caller.connect(callee.client.handle, "dev")
    async with asyncio.timeout(30):
        accepted = await callee.accepted.get()
    try:
        reader, writer = connection.open_stream()
        writer.write(marker)
        writer.write_eof()
        async with asyncio.timeout(20):
            peer_reader, peer_writer = await accepted.accept_stream()
        async with asyncio.timeout(20):
            peer_writer.write(await peer_reader.read())
        peer_writer.write_eof()
        async with asyncio.timeout(20):
            assert await reader.read() == marker
    finally:
        await connection.close()
        await accepted.close()


@pytest.fixture
async def peers(
    start_supernode: StartSupernode,
) -> AsyncIterator[tuple[SupernodeProcess, Client, Client]]:
    node = start_supernode(*FAST_LEASES)
    alice = await p2p_client(node.grpc_target, "alice", RELAY_ONLY)
    bob = await p2p_client(node.grpc_target, "bob", RELAY_ONLY)
    try:
        yield node, alice, bob
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_listener_listens_again_after_a_supernode_restart(
    start_supernode: StartSupernode, peers: tuple[SupernodeProcess, Client, Client], stop: str
) -> None:
    """SIGTERM ends the listener with UNAVAILABLE "listen elsewhere"; SIGKILL resets the
    connection. Either way the same ``incoming()`` listens on the restarted node, and
    alice's connect reaches bob again once he is listening."""
    node, alice, bob = peers
    accepting = Accepting(bob)
    try:
        await accepting.ready()
        await connect_and_talk(alice, accepting, b"before the restart")

        if stop == "sigterm":
            assert await asyncio.to_thread(node.terminate) == 0
        else:
            await asyncio.to_thread(node.kill)
        await stopped_listening(bob)
        await asyncio.to_thread(restart_on_same_port, start_supernode, node)

        await accepting.ready()  # readiness: no polling connect against PeerOffline
        assert not accepting.task.done()  # the same iteration kept going
        assert bob.listener.reconnects >= 1
        await connect_and_talk(alice, accepting, b"after the restart")
        assert not accepting.task.done()
    finally:
        await accepting.close()


async def test_listener_moves_to_the_next_target_when_its_supernode_goes_away(
    start_supernode: StartSupernode,
) -> None:
    """Bob's first target (a proxy in front of the node) disappears for good: his listener
    fails over to the second target, and alice reaches him there."""
    node = start_supernode(*FAST_LEASES)
    front = await RecordingProxy(node.grpc_target).start()
    alice = await p2p_client(node.grpc_target, "alice", RELAY_ONLY)
    bob = await p2p_client([front.address, node.grpc_target], "bob", RELAY_ONLY)
    accepting = Accepting(bob)
    try:
        await accepting.ready()
        assert bob.current_target == front.address
        await front.close()  # refuses new connections and cuts the open one
        await stopped_listening(bob)
        await accepting.ready()
        assert bob.current_target == node.grpc_target
        assert bob.listener.reconnects >= 1
        await connect_and_talk(alice, accepting, b"through the second target")
        assert not accepting.task.done()
    finally:
        await accepting.close()
        await alice.close()
        await bob.close()
        await front.close()
