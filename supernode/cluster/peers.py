"""Calls from this node to other nodes of its cluster (the internal ``ClusterService``).

Channels are made by ``supernode.transport`` (one per peer address, kept), requests and
responses stay bytes where the answer is relayed to a client unchanged (lookups), and every
call carries this node's credential: a token for the pseudo-handle ``~node/<name>`` signed
with the cluster's shared secret, which no client can hold (handles never contain ``~``).
With TLS the calls go to each peer's peer port over mutual TLS, the node's certificate
from the cluster CA being the credential the peer checks first (docs/cluster.md).
A peer's refusal comes back as the same domain error, so the client sees the owner's status
and message; a peer that cannot be reached is ``Unavailable`` naming the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from client_sdk.protocol.refusals import error_reason, known_reason
from supernode import transport
from supernode.errors import Reason, SupernodeError, Unavailable
from supernode.internal.v1 import cluster_pb2 as pb
from supernode.rpc.handlers import STATUS_OF
from supernode.sessions import IssuedToken, SessionAuthority
from supernode.tls import NodeTls

CLUSTER_SERVICE = "supernode.internal.v1.ClusterService"
_TIMEOUT_S = 5.0
# A peer's status back to the domain error that gives the client the same status.
_ERROR_OF: dict[grpc.StatusCode, type[SupernodeError]] = {
    code: cls for cls, code in STATUS_OF.items() if issubclass(cls, SupernodeError)
}
_RENEW_BEFORE_MS = 60_000
log = logging.getLogger(__name__)


def remote_error(node: str, error: grpc.aio.AioRpcError) -> SupernodeError:
    """The error a forwarded call's client gets for a peer's answer.

    A peer's deliberate refusal keeps its status, message and reason (a field violation
    follows from the message, ``errors.InvalidField.violation``). What gRPC itself reports
    (unreachable, timed out, a status no node sends) becomes UNAVAILABLE naming the node
    only: gRPC's own details hold peer addresses and socket errors, which are the
    operator's business (logged at DEBUG here), never a client's.
    """
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        log.debug("peer %s: %s: %s", node, code.name, error.details())
        return Unavailable(
            f"node {node} is unreachable ({code.name}), retry", reason=Reason.REPLICAS_UNAVAILABLE
        )
    refusal = _ERROR_OF.get(code)
    if refusal is None:
        log.debug("peer %s: %s: %s", node, code.name, error.details())
        return Unavailable(
            f"node {node} failed to answer ({code.name}), retry", reason=Reason.REPLICAS_UNAVAILABLE
        )
    reason = known_reason(error_reason(error.trailing_metadata()))
    return refusal(error.details() or code.name, reason=reason)


class Peers:
    def __init__(self, name: str, sessions: SessionAuthority, tls: NodeTls | None = None) -> None:
        """``tls``: call peers' peer ports with mutual TLS (the node's certificate)."""
        self.name = name
        self._tls = tls
        self._sessions = sessions
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._token: IssuedToken | None = None

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        now_ms = self._sessions.now_ms()
        if self._token is None or self._token.expires_at_ms - now_ms < _RENEW_BEFORE_MS:
            self._token = self._sessions.issue_node_token(self.name)
        return (("authorization", f"Bearer {self._token.token}"),)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = transport.open_peer(address, self._tls)
        return channel

    async def unary(
        self,
        node: str,
        address: str,
        method: str,
        request: bytes,
        *,
        deadline_s: float = _TIMEOUT_S,
    ) -> bytes:
        call = self._channel(address).unary_unary(f"/{CLUSTER_SERVICE}/{method}")
        try:
            response: bytes = await call(request, timeout=deadline_s, metadata=self._metadata())
        except grpc.aio.AioRpcError as exc:
            raise remote_error(node, exc) from exc
        return response

    async def stream(
        self, node: str, address: str, request: pb.StreamRequest, *, idle_s: float = _TIMEOUT_S
    ) -> AsyncIterator[pb.StreamChunk]:
        """A partition stream from ``node``; each chunk must come within ``idle_s``."""
        call = self._channel(address).unary_stream(
            f"/{CLUSTER_SERVICE}/Stream", response_deserializer=pb.StreamChunk.FromString
        )
        stream = call(request.SerializeToString(), metadata=self._metadata())
        iterator = stream.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(idle_s):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise remote_error(node, exc) from exc
        except TimeoutError as exc:
            raise Unavailable(
                f"node {node} sent nothing for {idle_s:.0f} s", reason=Reason.REPLICAS_UNAVAILABLE
            ) from exc
        finally:
            stream.cancel()

    async def feed(self, address: str) -> AsyncIterator[pb.FeedEvent]:
        call = self._channel(address).unary_stream(
            f"/{CLUSTER_SERVICE}/Feed", response_deserializer=pb.FeedEvent.FromString
        )
        stream = call(pb.FeedRequest().SerializeToString(), metadata=self._metadata())
        async for event in stream:
            yield event

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
