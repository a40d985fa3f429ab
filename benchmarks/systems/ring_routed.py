"""A benchmark client that routes each lookup as the ring-aware SDK does (``client_sdk.ring``).

The proxied path (any call to any node, which forwards it to a replica) and the ring-aware
one (each call straight to a replica of its handle) are compared with the same raw request
bytes, so the difference measured is the route, not the SDK's own work. The client asks its
first target for the placement (``GetPlacement``) when it connects, opens one channel per
node it names, and picks each call's node with :meth:`client_sdk.ring.Ring.target_for`,
the SDK's own choice: a replica of the handle, this client's fixed ``spread`` choosing among
several (so that many clients share the replicas while each keeps to one, as the SDK does).

The placement is not refreshed: the benchmark's cluster does not change while it runs, and
the cluster benchmark checks before the points that a ring-routed lookup is forwarded by no
node (:meth:`benchmarks.cluster.ClusterSystem.check_ring_routing`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import grpc

from benchmarks.systems.base import ClientSpec
from benchmarks.systems.grpc_raw import (
    CHANNEL_OPTIONS,
    CONNECT_TIMEOUT_S,
    EmptyResponse,
    bearer,
)
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.ring import Ring
from client_sdk.transport import DirectoryConnection

RING = "ring"  # ClientSpec option: "1" routes each call to a replica of its handle
LOOKUP_PATH = "/supernode.v1.PresenceService/Lookup"


class NoRing(Exception):
    """The node asked for the placement answered that it is in no cluster."""


class RingRoutedClient:
    """Single lookups of the handles ``spec.options["handles"]`` draws, each sent to a
    replica of its handle; ``spec.target`` answers the placement."""

    def __init__(self, spec: ClientSpec, handles: Sequence[str]) -> None:
        self._first = spec.target
        self._handles = list(handles)
        self._token = spec.options["token"]
        self._metadata = bearer(self._token)
        self._spread = random.randrange(1 << 16)
        self._ring: Ring | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    async def connect(self) -> None:
        async with DirectoryConnection(self._first) as connection:
            connection.token = self._token
            answer = await connection.get_placement(deadline=CONNECT_TIMEOUT_S)
        ring = Ring.from_response(answer)
        if ring is None:
            raise NoRing(f"{self._first} is in no cluster: it answered placement epoch 0")
        self._ring = ring
        for address in sorted({a for replicas in ring.replicas for a in replicas}):
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await channel.channel_ready()
            self._calls[address] = channel.unary_unary(LOOKUP_PATH)

    def target_of(self, index: int) -> str:
        """The node this client sends the lookup of ``handles[index]`` to."""
        assert self._ring is not None, "connect() first"
        return self._ring.target_for(self._handles[index], self._spread)

    async def lookup(self, indexes: list[int]) -> None:
        index = indexes[0]
        request = pb.LookupRequest(handle=self._handles[index]).SerializeToString()
        if not await self._calls[self.target_of(index)](request, metadata=self._metadata):
            raise EmptyResponse(LOOKUP_PATH)

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        self._calls.clear()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
