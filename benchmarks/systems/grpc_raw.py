"""gRPC plumbing shared by the supernode and echo benchmarks: unary calls on raw bytes.

Both systems are driven by the same client code sending the same request bytes (a
serialized ``LookupRequest`` or ``LookupManyRequest``), so the only difference measured
between them is what the server does with a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import grpc

from benchmarks.dataset import Dataset
from client_sdk.protocol.v1 import directory_pb2 as pb

# The channel options of supernode/server.py's grpc.aio.server, mirrored so the echo
# server is the same framework configured the same way (keep the two in step).
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", 64 * 1024),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.so_reuseport", 0),
]
# gRPC shares one TCP connection between channels with equal arguments unless told not to;
# each client here must be its own connection.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 << 20),
]
CONNECT_TIMEOUT_S = 10.0

RequestEncoder = Callable[[list[int]], bytes]


class EmptyResponse(Exception):
    """The server answered OK with no bytes: a broken lookup, counted as an error."""


def encode_lookup(indexes: list[int]) -> bytes:
    (index,) = indexes
    return pb.LookupRequest(handle=Dataset.handle(index)).SerializeToString()


def encode_lookup_many(indexes: list[int]) -> bytes:
    return pb.LookupManyRequest(handles=[Dataset.handle(i) for i in indexes]).SerializeToString()


def request_encoder(batch: int) -> RequestEncoder:
    """One handle goes through ``Lookup``; more through ``LookupMany``."""
    return encode_lookup if batch == 1 else encode_lookup_many


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class RawUnaryClient:
    """One channel (one TCP connection) calling one unary method with bytes in and out."""

    def __init__(
        self,
        target: str,
        method: str,
        encode: RequestEncoder,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._target = target
        self._method = method
        self._encode = encode
        self._metadata = tuple(metadata) or None
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable | None = None

    async def connect(self) -> None:
        self._channel = grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await self._channel.channel_ready()
        # No serializers: the request is already bytes and the response stays bytes.
        self._call = self._channel.unary_unary(self._method)

    async def lookup(self, indexes: list[int]) -> None:
        assert self._call is not None, "connect() first"
        response = await self._call(self._encode(indexes), metadata=self._metadata)
        if not response:
            raise EmptyResponse(self._method)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
