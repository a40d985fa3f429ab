"""A node as a member of a cluster: etcd, the mirror, membership, routing, feeds.

Built by ``supernode.server`` when ``cluster.etcd_endpoints`` is set; a node alone never
imports this package. Start-up order matters: the mirror first (from etcd, or from the
store when etcd is down and the node has been a member before), then the shared secret,
then the directory graph over the cluster's registry, then joining, then a bounded wait
for a placement so the first calls find an owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from supernode import __version__
from supernode.cluster.etcd import EtcdClient, EtcdConfig, EtcdError, EtcdUnavailable
from supernode.cluster.feeds import RemoteFeeds
from supernode.cluster.hints import HintBook
from supernode.cluster.keys import Keys, MemberInfo
from supernode.cluster.membership import Membership
from supernode.cluster.mirror import Mirror, stored_view
from supernode.cluster.mover import Mover
from supernode.cluster.peers import Peers
from supernode.cluster.placement import Placement
from supernode.cluster.registry import ClusterAccounts
from supernode.cluster.replication import Replicator
from supernode.cluster.revocations import ClusterRevocations
from supernode.cluster.routing import ClusterPresence
from supernode.cluster.service import FeedHub
from supernode.cluster.view import Applied, ClusterView
from supernode.config import Config
from supernode.directory.watch import WatchHub
from supernode.node import wall_clock_ms
from supernode.revocations import Revocations
from supernode.sessions import SECRET_BYTES
from supernode.store import Store
from supernode.tls import NodeTls

log = logging.getLogger("supernode.cluster")

_PLACEMENT_WAIT_S = 15.0
_REPLAY_INTERVAL_S = 1.0


class ClusterMember:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        name: str,
        revocations: Revocations | None = None,
        tls: NodeTls | None = None,
        peer_address: str = "",
    ) -> None:
        """``revocations``: the set this node's token checks consult; the mirror keeps it
        equal to etcd's ``/revoked/`` (and the stored view's, while etcd is away).
        ``tls``: the node's material for etcd and peers (mutual TLS); ``peer_address``:
        its peer port, published in its member record (empty: the public address)."""
        settings = config.cluster
        self.config = config
        self.name = name
        self.tls = tls
        self.peer_address = peer_address
        self.keys = Keys(settings.etcd_prefix)
        self.etcd = EtcdClient(
            EtcdConfig(
                tuple(settings.endpoints),
                call_timeout_s=settings.etcd_timeout_seconds,
                # Several attempts per operation: a dead member or an election costs one.
                attempt_timeout_s=min(1.5, settings.etcd_timeout_seconds),
                tls=tls,
            )
        )
        self.store = store
        self.view = stored_view(store) or ClusterView()
        self.mirror = Mirror(self.etcd, self.keys, store, self.view, on_change=self._view_changed)
        self.registry = ClusterAccounts(store, self.etcd, self.keys)
        self.revocations = Revocations() if revocations is None else revocations
        self.revocations.replace(self.view.revoked.items())
        self.revoker = ClusterRevocations(
            self.etcd, self.keys, self.view, self.revocations, clock_ms=wall_clock_ms
        )
        self.feed_hub = FeedHub()
        self.started_at_ms = int(time.time() * 1000)
        self.membership = Membership(
            self.etcd, self.keys, self.view, settings, name=name, info=self._member_info
        )
        self.presence: ClusterPresence | None = None
        self.peers: Peers | None = None
        self.feeds: RemoteFeeds | None = None
        self.hints: HintBook | None = None
        self.replicator: Replicator | None = None
        self.mover: Mover | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._placed = asyncio.Event()
        self._members_seen: frozenset[str] = frozenset()  # as last logged

    def _member_info(self) -> MemberInfo:
        return MemberInfo(
            address=self.name,
            zone=self.config.cluster.zone,
            version=__version__,
            started_at_ms=self.started_at_ms,
            mirror_revision=self.view.revision,
            peer_address=self.peer_address,
        )

    @property
    def etcd_reachable(self) -> bool:
        return self.mirror.connected

    def epoch(self) -> int:
        placement = self.view.placement
        return 0 if placement is None else placement.epoch

    def placement(self) -> Placement | None:
        return self.view.placement

    @property
    def etcd_errors(self) -> int:
        return self.membership.etcd_errors + self.registry.etcd_errors

    @property
    def latest_revision(self) -> int:
        """The newest etcd revision any member reported its mirror at (or ours)."""
        reported = (m.mirror_revision for m in self.view.members.values())
        return max(self.view.revision, max(reported, default=0))

    async def open(self) -> bytes:
        """Load the mirror and the shared secret; the secret is returned for the directory."""
        try:
            # A new node reads everything; a known one resumes from its revision, unless
            # etcd is behind it (etcd was replaced or restored from a backup).
            if self.view.revision == 0 or await self.mirror.etcd_revision() < self.view.revision:
                await self.mirror.resync()
            if not self.view.token_secret:
                await self.etcd.create_if_absent(
                    self.keys.token_secret, secrets.token_bytes(SECRET_BYTES)
                )
                entry = await self.etcd.get(self.keys.token_secret)
                assert entry is not None
                self.view.token_secret = entry.value
        except EtcdUnavailable as exc:
            if not self.view.token_secret:
                raise OSError(
                    f"cluster: etcd is unreachable and this node has never been a member, so it "
                    f"knows nothing to serve from: {exc}"
                ) from exc
            log.warning("cluster: etcd unreachable, serving from the mirror: %s", exc)
        return self.view.token_secret

    async def start(self, presence: ClusterPresence, peers: Peers, hub: WatchHub) -> None:
        self.presence, self.peers = presence, peers
        settings = self.config.cluster
        self.hints = HintBook(
            self.store,
            clock_ms=presence.local.admission.clock_ms,
            cap_per_target=settings.max_hints_per_node,
            max_age_ms=self.config.lease.max_ttl_seconds * 1000,
        )
        self.replicator = presence.replicator = Replicator(
            presence.local,
            self.view,
            peers,
            self.hints,
            name=self.name,
            write_quorum=settings.writes_acknowledged_after,
            count=presence.count_forwarded,
        )
        self.feeds = RemoteFeeds(self.view, peers, hub, name=self.name)
        self.mover = Mover(
            self.view,
            peers,
            presence.local.replica,
            self.etcd,
            self.keys,
            name=self.name,
            lease=lambda: self.membership.lease,
        )
        with contextlib.suppress(EtcdError):
            await self.membership.join()
        self._tasks = [
            asyncio.create_task(self.mirror.run(), name="cluster mirror"),
            asyncio.create_task(self.membership.run(), name="cluster membership"),
            asyncio.create_task(self._replay_hints(), name="hint replay"),
            asyncio.create_task(self.mover.run(), name="partition mover"),
        ]
        self.feeds.sync()
        if self.view.placement is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PLACEMENT_WAIT_S):
                    await self._placed.wait()
        if self.view.placement is None:
            log.warning("cluster: no placement yet; presence calls answer UNAVAILABLE until one")

    async def _replay_hints(self) -> None:
        """Hand returning replicas what they missed, as soon as their member key is back."""
        assert self.replicator is not None
        while True:
            try:
                await self.replicator.replay_hints(self.epoch())
            except Exception:
                log.exception("hint replay failed; retrying")
            await asyncio.sleep(_REPLAY_INTERVAL_S)

    def _log_members(self) -> None:
        """One INFO line per change of the live member set, as this node sees it."""
        members = frozenset(self.view.members)
        joined, left = sorted(members - self._members_seen), sorted(self._members_seen - members)
        self._members_seen = members
        if joined or left:
            log.info(
                "cluster members: %d live (joined: %s; left: %s)",
                len(members),
                ", ".join(joined) or "none",
                ", ".join(left) or "none",
                extra={"members": len(members), "joined": joined, "left": left},
            )

    def _view_changed(self, applied: Applied) -> None:
        if applied.revoked:
            self.revocations.update(applied.revoked)
        if self.view.placement is not None:
            self._placed.set()
        if applied.members_changed:
            self._log_members()
        if applied.members_changed or applied.placement_changed or applied.streamed_changed:
            self.membership.view_changed()
        if applied.placement_changed and self.mover is not None:
            self.mover.view_changed()
        if applied.placement_changed and self.presence is not None:
            self.presence.view_changed()
        if (applied.members_changed or applied.placement_changed) and self.feeds is not None:
            self.feeds.sync()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.feeds is not None:
            await self.feeds.close()
        if self.replicator is not None:
            await self.replicator.close()
        self.feed_hub.close()
        await self.membership.leave()
        if self.peers is not None:
            await self.peers.close()
        await self.etcd.close()
