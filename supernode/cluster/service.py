"""``ClusterService``: what this node does when another node of its cluster asks.

Every method requires a node credential (``~node/<name>`` token); a client token gets
PERMISSION_DENIED. With TLS every method also requires that the call came over mutual TLS
with a certificate of the cluster CA (the peer port): a call on the public port gets
PERMISSION_DENIED even with a valid node token. Writes are applied on the local replica and
published to this node's watchers and to every node following its feed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias

import grpc

from client_sdk.protocol.v1 import rendezvous_pb2 as rpb
from supernode.cluster.peers import CLUSTER_SERVICE
from supernode.cluster.placement import Placement, partition_of
from supernode.cluster.replication import write_message, write_value
from supernode.directory.presence import Change, DeviceChanged, DeviceWrite, Presence
from supernode.errors import (
    Aborted,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from supernode.internal.v1 import cluster_pb2 as pb
from supernode.metrics import Metrics
from supernode.rpc.auth import session_of
from supernode.rpc.handlers import ServiceHandlers, server_stream_handler, unary_handler
from supernode.sessions import NODE_HANDLE_PREFIX, Audience, SessionAuthority
from supernode.tls import certificate_names_node

Context: TypeAlias = grpc.aio.ServicerContext
DeliverOffer = Callable[[pb.DeliverOfferRequest], Awaitable[rpb.ConnectResponse]]
_FEED_QUEUE = 10_000  # changes buffered towards one follower before it is cut off
# ... and their bytes (a record may be 64 KB: 10,000 of them would be 640 MB).
_FEED_QUEUE_BYTES = 64 << 20
_STREAM_PAGE = 500  # stored versions read per step of a partition stream
_STREAM_CHUNK = 500  # versions per message of a partition stream


def client_certificate_names(context: Context) -> list[str] | None:
    """The subject alternative names of the caller's verified client certificate, or None
    without one. Only the peer port asks for one (and refuses the handshake unless it
    chains to the cluster CA), so a call that came in on the public port, TLS or not,
    never has one (``supernode.transport``)."""
    auth = context.auth_context()
    if not auth.get("x509_pem_cert"):
        return None
    names = auth.get("x509_subject_alternative_name", ())
    return [bytes(name).decode(errors="replace") for name in names]


StorePage = Callable[[bytes, int], tuple[list[tuple[str, str, int, int, bytes]], bytes | None]]


def rest_after(worked_s: float, share: float) -> float:
    """How long to rest after ``worked_s`` of work so that work is ``share`` of the time."""
    if not 0 < share <= 1:
        raise ValueError(f"share: {share}, must be in (0, 1]")
    return max(worked_s, 0.0) * (1 / share - 1)


async def stream_versions(
    page: StorePage, wanted: frozenset[int], partitions: int, share: float = 1.0
) -> AsyncIterator[list[DeviceWrite]]:
    """The stored versions of the ``wanted`` partitions, in chunks. One pass over the
    devices family: keys are by handle, so a partition is not one prefix; each handle is
    hashed once.

    ``share`` (``cluster.stream_share``): after each page the stream rests in proportion
    to the page's time, so that streaming is at most that share of this node's time. Calls
    queued behind a page then wait one page at most, and a join takes CPU from serving
    only in proportion. Measured (``benchmarks.cluster_join``, two cores, two runs each):
    streaming flat out, lookups' p99 during a join was 36 ms against 3.6-3.8 ms in the
    steady state; at 0.5, 17.5-19 ms, the join taking 2.1-2.4 s instead of 2.0."""
    start: bytes | None = b""
    chunk: list[DeviceWrite] = []
    last_handle, last_wanted = "", False
    while start is not None:
        began = time.perf_counter()
        rows, start = page(start, _STREAM_PAGE)
        for handle, device_id, expires_at_ms, seq, payload in rows:
            if handle != last_handle:
                last_handle = handle
                last_wanted = partition_of(handle, partitions) in wanted
            if last_wanted:
                chunk.append(DeviceWrite(handle, device_id, seq, expires_at_ms, payload))
                if len(chunk) >= _STREAM_CHUNK:
                    yield chunk
                    chunk = []
        await asyncio.sleep(rest_after(time.perf_counter() - began, share))
    if chunk:
        yield chunk


class FeedHub:
    """Followers of this node's presence changes (implements ``PresenceObserver``)."""

    def __init__(self) -> None:
        self._followers: set[Follower] = set()
        self.closed = False

    def device_changed(self, event: DeviceChanged) -> None:
        if event.change is Change.RENEWED:  # subscriber nodes feed watchers only
            return
        for follower in list(self._followers):
            follower.offer(event)

    def follow(self) -> Follower:
        if self.closed:
            raise Unavailable("feed: this node is shutting down", reason=Reason.SHUTTING_DOWN)
        follower = Follower()
        self._followers.add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        self._followers.discard(follower)

    def close(self) -> None:
        """Shutting down: end every feed now and refuse new ones (the drain must not wait
        for other nodes' streams)."""
        self.closed = True
        for follower in list(self._followers):
            follower.closed = True
            follower.news.set()


class Follower:
    def __init__(self) -> None:
        self.pending: deque[DeviceChanged] = deque()
        self.pending_bytes = 0
        self.news = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def offer(self, event: DeviceChanged) -> None:
        size = len(event.device or b"") + len(event.handle) + 100
        if len(self.pending) >= _FEED_QUEUE or self.pending_bytes + size > _FEED_QUEUE_BYTES:
            self.overflowed = True
            self.pending.clear()  # the follower is cut off and resyncs: nothing to keep
            self.pending_bytes = 0
        elif not self.overflowed:
            self.pending.append(event)
            self.pending_bytes += size
        self.news.set()

    def take(self) -> DeviceChanged:
        event = self.pending.popleft()
        self.pending_bytes -= len(event.device or b"") + len(event.handle) + 100
        return event


class ClusterApi:
    def __init__(
        self,
        presence: Presence,
        sessions: SessionAuthority,
        metrics: Metrics,
        feeds: FeedHub,
        deliver_offer: DeliverOffer,
        placement: Callable[[], Placement | None],
        store_page: StorePage,
        stream_share: float = 1.0,
        *,
        mutual_tls: bool = False,
    ) -> None:
        """``placement``: the placement this node routes by now; ``store_page``: the store's
        ``device_page``, which a partition stream reads (at most ``stream_share`` of the
        time: :func:`stream_versions`). ``mutual_tls``: callers must have come through the
        peer port with a certificate of the cluster CA (the node runs with TLS)."""
        self._mutual_tls = mutual_tls
        self._placement = placement
        self._store_page = store_page
        self._stream_share = stream_share
        self._presence = presence
        self._sessions = sessions
        self._metrics = metrics
        self._feeds = feeds
        self._deliver_offer = deliver_offer

    def _node_of(self, context: Context) -> str:
        names = client_certificate_names(context) if self._mutual_tls else None
        if self._mutual_tls and names is None:
            raise PermissionDenied(
                "cluster: calls between nodes need mutual TLS (the peer port, with a "
                "certificate from the cluster CA)",
                reason=Reason.INTERNAL_ONLY,
            )
        session = session_of(context, self._sessions, Audience.NODE)
        if not session.handle.startswith(NODE_HANDLE_PREFIX):  # never issued so: belt and braces
            raise PermissionDenied(
                "cluster: only nodes of this cluster may call this service",
                reason=Reason.INTERNAL_ONLY,
            )
        node = session.handle[len(NODE_HANDLE_PREFIX) :]
        if names is not None and not certificate_names_node(names, node):
            raise PermissionDenied(
                f"cluster: the caller's certificate does not name node {node} (its host "
                "must be among the certificate's subject alternative names)",
                reason=Reason.INTERNAL_ONLY,
            )
        return node

    def _check_route(self, handle: str, epoch: int) -> None:
        """Refuse a call routed by a placement older than the last change of ``handle``'s
        partition here (a move began or flipped since): the caller's replica sets are not
        the ones that hold or must get the data. ABORTED, which the caller answers by
        routing again once its own mirror has caught up; calls to partitions that did not
        move are not disturbed by moves elsewhere."""
        placement = self._placement()
        if placement is None or epoch == 0:
            return
        changed = placement.changed_at(partition_of(handle, placement.partitions))
        if epoch < changed:
            raise Aborted(
                f"cluster: routed by placement epoch {epoch}, but {handle!r}'s partition "
                f"changed at epoch {changed}; route again",
                reason=Reason.CONFLICT,
            )

    def apply(self, request: pb.ApplyRequest, context: Context) -> pb.ApplyResponse:
        self._node_of(context)
        write = write_value(request.write)
        self._check_route(write.handle, request.epoch)
        change = self._presence.apply_write(write, request.fresh)
        return pb.ApplyResponse(applied=change is not None)

    def lookup(self, request: pb.ReplicaLookupRequest, context: Context) -> bytes:
        self._node_of(context)
        if len(request.handles) != 1:
            raise NotFound(
                "handles: exactly one handle per Lookup", reason=Reason.MALFORMED_REQUEST
            )
        self._check_route(request.handles[0], request.epoch)
        return self._presence.lookup(request.handles[0])

    def lookup_many(self, request: pb.ReplicaLookupRequest, context: Context) -> bytes:
        self._node_of(context)
        return self._presence.lookup_many(request.handles)

    def versions(self, request: pb.ReplicaLookupRequest, context: Context) -> pb.VersionsResponse:
        self._node_of(context)
        if len(request.handles) != 1:
            raise NotFound(
                "handles: exactly one handle per Versions", reason=Reason.MALFORMED_REQUEST
            )
        self._check_route(request.handles[0], request.epoch)
        versions = self._presence.replica.versions(request.handles[0])
        return pb.VersionsResponse(versions=[write_message(v) for v in versions])

    async def stream(self, request: pb.StreamRequest, context: Context) -> AsyncIterator[bytes]:
        """Every stored version of the partitions asked for, read page by page (a move's
        source; see ``supernode.cluster.mover``)."""
        self._node_of(context)
        placement = self._placement()
        if placement is None or placement.epoch < request.epoch:
            at = 0 if placement is None else placement.epoch
            raise Unavailable(
                f"cluster: this node is at placement epoch {at}, the move began at "
                f"{request.epoch}; retry once its mirror caught up",
                reason=Reason.NOT_READY,
            )
        if request.partition_count != placement.partitions:
            raise InvalidArgument(
                f"partition_count: {request.partition_count}, the cluster has "
                f"{placement.partitions}",
                reason=Reason.INVALID_FIELD,
            )
        wanted = frozenset(request.partitions)
        async for versions in stream_versions(
            self._store_page, wanted, placement.partitions, self._stream_share
        ):
            yield pb.StreamChunk(versions=[write_message(v) for v in versions]).SerializeToString()

    async def feed(self, request: pb.FeedRequest, context: Context) -> AsyncIterator[bytes]:
        self._node_of(context)
        follower = self._feeds.follow()
        try:
            yield pb.FeedEvent(ack=1).SerializeToString()
            while True:
                await follower.news.wait()
                follower.news.clear()
                if follower.closed:
                    return
                if follower.overflowed:
                    raise ResourceExhausted(
                        "feed: follower too slow, changes were dropped", reason=Reason.TOO_SLOW
                    )
                while follower.pending:
                    event = follower.take()
                    yield pb.FeedEvent(
                        change=pb.FeedChange(
                            handle=event.handle,
                            device_id=event.device_id,
                            change=event.change.value,
                            device=event.device or b"",
                            seq=event.seq,
                        )
                    ).SerializeToString()
        finally:
            self._feeds.leave(follower)

    async def deliver_offer(
        self, request: pb.DeliverOfferRequest, context: Context
    ) -> rpb.ConnectResponse:
        self._node_of(context)
        return await self._deliver_offer(request)

    def method_handlers(self) -> ServiceHandlers:
        m = self._metrics
        return {
            CLUSTER_SERVICE: {
                "Apply": unary_handler("cluster.Apply", pb.ApplyRequest, self.apply, m),
                "Lookup": unary_handler("cluster.Lookup", pb.ReplicaLookupRequest, self.lookup, m),
                "LookupMany": unary_handler(
                    "cluster.LookupMany", pb.ReplicaLookupRequest, self.lookup_many, m
                ),
                "Versions": unary_handler(
                    "cluster.Versions", pb.ReplicaLookupRequest, self.versions, m
                ),
                "Feed": server_stream_handler("cluster.Feed", pb.FeedRequest, self.feed, m),
                "Stream": server_stream_handler("cluster.Stream", pb.StreamRequest, self.stream, m),
                "DeliverOffer": unary_handler(
                    "cluster.DeliverOffer", pb.DeliverOfferRequest, self.deliver_offer, m
                ),
            }
        }
