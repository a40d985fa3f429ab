"""Long-lived streams against the keepalive policy: idle for longer than every keepalive,
nothing ends.

gRPC's default server policy allows a client ping only every 5 minutes (and none on a
connection without calls); a client pinging more often collects strikes and, after two,
gets GOAWAY ``too_many_pings``, which ends every stream of the connection. The SDK pings
every ``Keepalive.time_seconds``; the supernode sets its policy from ``ServerSettings``.
Here both sides run at a tenth of their defaults (same ratios), so a test of a few
seconds covers what takes minutes in production, and the HTTP/2 frames are counted on the
wire by a proxy between the clients and the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator

import grpc
import pytest

from client_sdk import ClientConfig, DeviceStatus, EventKind, P2PSettings
from client_sdk.config import Keepalive
from client_sdk.transport import DirectoryConnection
from supernode.config import ServerSettings
from supernode.transport import MAX_PING_STRIKES
from tests.integration.h2_frames import FrameCountingProxy
from tests.integration.p2p_support import first_incoming, p2p_client, until_listening
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, Collector, StartSupernode
from tests.integration.waiting import eventually

SCALE = 0.1
SERVER = ServerSettings()
CLIENT = Keepalive()
SCALED_CLIENT = Keepalive(
    time_seconds=CLIENT.time_seconds * SCALE, timeout_seconds=CLIENT.timeout_seconds * SCALE
)
SCALED_SERVER_FLAGS = (
    "--keepalive-min-ping-interval-seconds",
    str(SERVER.keepalive_min_ping_interval_seconds * SCALE),
    "--keepalive-time-seconds",
    str(SERVER.keepalive_time_seconds * SCALE),
    "--keepalive-timeout-seconds",
    str(SERVER.keepalive_timeout_seconds * SCALE),
)
# Channels with equal options share one TCP connection; a pool per channel gives each
# client (and the idle channel) its own, as in separate apps.
CONFIG = dataclasses.replace(
    TEST_CONFIG,
    channel_options=(*SCALED_CLIENT.channel_options(), ("grpc.use_local_subchannel_pool", 1)),
)
RELAY_ONLY = P2PSettings(direct=False)
# Idle until each connection sent more pings than the strikes gRPC tolerates (the next one
# is GOAWAY under a stricter policy), and for longer than the server's own keepalive (it
# pings, and waits its timeout for the answer).
SERVER_KEEPALIVE = SERVER.keepalive_time_seconds + SERVER.keepalive_timeout_seconds
IDLE_PINGS = max(MAX_PING_STRIKES + 2, math.ceil(SERVER_KEEPALIVE / CLIENT.time_seconds) + 1)


def test_the_sdk_default_keepalive_is_well_inside_the_servers_policy() -> None:
    """Defaults, unscaled: at least twice the interval the supernode permits, so timer
    slack never makes a ping early enough to count as a strike."""
    assert CLIENT.time_seconds >= 2 * SERVER.keepalive_min_ping_interval_seconds
    assert CLIENT.timeout_seconds < CLIENT.time_seconds
    options = dict(ClientConfig().channel_options)
    assert options["grpc.keepalive_time_ms"] == CLIENT.time_seconds * 1000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0


@pytest.fixture
def node(start_supernode: StartSupernode) -> SupernodeProcess:
    return start_supernode(*SCALED_SERVER_FLAGS)


@pytest.fixture
async def front(node: SupernodeProcess) -> AsyncIterator[FrameCountingProxy]:
    proxy = FrameCountingProxy(node.grpc_target)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_idle_watch_listener_and_channel_outlive_every_keepalive(
    front: FrameCountingProxy,
) -> None:
    """A Watch, a Listen stream and a channel without calls sit idle past every keepalive;
    then a change still arrives on the first watch stream, a caller still reaches the first
    Listen stream, and no connection got a GOAWAY or was replaced."""
    alice = await p2p_client(front.address, "alice", RELAY_ONLY, config=CONFIG)
    bob = await p2p_client(front.address, "bob", RELAY_ONLY, config=CONFIG)
    idle_channel = DirectoryConnection(front.address, options=CONFIG.channel_options)
    watch: Collector | None = None
    states: ChannelStates | None = None
    try:
        await idle_channel.get_account(alice.handle)  # connected; no call from now on
        watch = Collector(alice.watch([bob.handle]))
        await watch.wait_for(lambda event: event.kind is EventKind.SNAPSHOT)
        accepting = asyncio.create_task(first_incoming(bob))
        await until_listening(bob, accepting)
        states = ChannelStates(idle_channel.channel)
        before = front.sent_by("client")
        assert len(before) == 3  # alice's, bob's and the idle channel's connections

        async def idle_past_every_keepalive() -> bool:
            assert front.total("GOAWAY") == 0
            now = front.sent_by("client")
            assert len(now) == len(before), "a client opened a new connection"
            return all(
                n["PING"] - b["PING"] >= IDLE_PINGS for n, b in zip(now, before, strict=True)
            )

        await eventually(
            idle_past_every_keepalive,
            within=3 * IDLE_PINGS * SCALED_CLIENT.time_seconds,
            what=f"{IDLE_PINGS} keepalive pings on every connection",
        )

        await bob.update_status("dev", DeviceStatus.AWAY)
        changed = await watch.wait_for(lambda event: event.kind is EventKind.UPDATED)
        assert changed.device is not None and changed.device.status is DeviceStatus.AWAY
        assert watch.watch.reconnects == 0  # the original stream carried it

        async with asyncio.timeout(30):
            caller = await alice.connect(bob.handle, "dev")
        async with asyncio.timeout(30):
            callee = await accepting
        assert callee.peer.handle == alice.handle
        assert bob.listener.reconnects == 0  # it came on the Listen stream opened first
        await caller.close()
        await callee.close()

        assert states.seen == [grpc.ChannelConnectivity.READY]  # never dropped, even idle
        await idle_channel.get_account(alice.handle)
        assert front.total("GOAWAY") == 0
        assert len(front.sent_by("client")) == 3
    finally:
        if states is not None:
            await states.close()
        if watch is not None:
            await watch.close()
        await idle_channel.close()
        await alice.close()
        await bob.close()


class ChannelStates:
    """Every connectivity state a channel passes through (a GOAWAY makes it leave READY)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.seen = [channel.get_state()]
        self._task = asyncio.create_task(self._follow(channel))

    async def _follow(self, channel: grpc.aio.Channel) -> None:
        while True:
            await channel.wait_for_state_change(self.seen[-1])
            self.seen.append(channel.get_state())

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
