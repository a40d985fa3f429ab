"""The mirror: etcd's cluster keys followed into the node, so the hot path never calls etcd.

One prefix watch over the whole cluster prefix, resumed from the last applied revision
(``supernode.cluster.etcd.PrefixWatch`` resumes across disconnects); when etcd compacted that
revision away, a full resync (read everything, rebuild, watch on). Accounts go into the
store (where lookups and search read them); members, nodes, placement, the shared secret
and revoked sessions into :class:`ClusterView`, which is persisted in the store after every
batch, so a node that restarts while etcd is down serves from what it last knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable

from google.protobuf.message import DecodeError

from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.cluster.etcd import (
    Compacted,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    EventKind,
    PrefixWatch,
    WatchEvent,
)
from supernode.cluster.keys import Keys, LayoutError
from supernode.cluster.view import Applied, ClusterView
from supernode.directory import account_state, search
from supernode.directory.account_record import AccountRecord
from supernode.store import Store

log = logging.getLogger("supernode.cluster")

VIEW_META = "cluster_view"
REVISION_META = "cluster_revision"  # the last applied etcd revision (u64), every batch
_U64 = struct.Struct(">Q")
_MAX_RESYNC_RESTARTS = 5  # a compaction mid-read starts the read again, this many times


def keep_newer_state(store: Store, handle: str, state: bytes) -> None:
    """Store an account's state unless the store already holds a later one: the write a
    node made itself after its compare-and-swap may be ahead of the mirror's events."""
    try:
        newer = account_state.position(state) > account_state.position(
            store.get_account_state(handle)
        )
    except DecodeError:
        log.warning("mirror: /account-state/%s holds no AccountState; ignored", handle)
        return
    if newer:
        store.put_account_state(handle, state)


def stored_view(store: Store) -> ClusterView | None:
    """What the node knew when it stopped, or None (never a member, or unreadable)."""
    raw = store.get_meta(VIEW_META)
    if raw is None:
        return None
    try:
        view = ClusterView.from_bytes(raw)
    except LayoutError as exc:
        log.warning("%s; resyncing from etcd", exc)
        return None
    revision = store.get_meta(REVISION_META)
    if revision is not None and len(revision) == _U64.size:
        view.revision = max(view.revision, _U64.unpack(revision)[0])
    view.revoked = dict(store.revocations())
    return view


class Mirror:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: Keys,
        store: Store,
        view: ClusterView,
        *,
        on_change: Callable[[Applied], None],
    ) -> None:
        self._etcd = etcd
        self._keys = keys
        self._store = store
        self.view = view
        self._on_change = on_change
        self._watch: PrefixWatch | None = None
        self.applied_at = time.monotonic()  # when the last batch (or progress) arrived
        self.resyncs = 0

    @property
    def connected(self) -> bool:
        """Whether the watch on etcd is connected now (it reconnects by itself)."""
        return self._watch is not None and self._watch.connected

    async def etcd_revision(self) -> int:
        """etcd's current revision (one small read)."""
        return (await self._etcd.get_prefix(self._keys.placement)).revision

    async def resync(self) -> None:
        """Read every cluster key and rebuild the view from it (start-up, compaction).

        Accounts go into the store a page at a time, so a node's memory does not grow with
        the number of accounts; the rest (members, placement: small) builds a fresh view,
        which replaces this one once every page is read. The revision is stored last: a
        crash mid-way resyncs again, and inserting an account twice changes nothing.
        """
        for _ in range(_MAX_RESYNC_RESTARTS):
            with contextlib.suppress(Compacted):
                fresh = ClusterView()
                async for page in self._etcd.prefix_pages(self._keys.root):
                    events = [
                        WatchEvent(EventKind.PUT, e.key, e.value, e.mod_revision)
                        for e in page.entries
                    ]
                    applied = fresh.apply(self._keys, events, page.revision)
                    for account in applied.accounts:
                        self._insert_account(account.handle, account.account)
                    for seen in applied.states:
                        keep_newer_state(self._store, seen.handle, seen.state)
                    for problem in applied.ignored:
                        log.warning("mirror: ignored %s", problem)
                # Revocations whose lease ended while we were away: gone from etcd, not here.
                revoked: dict[str, bytes | None] = dict.fromkeys(
                    set(self.view.revoked) - set(fresh.revoked)
                )
                revoked.update(fresh.revoked)
                self.view.replace_with(fresh)
                self.resyncs += 1
                self._commit(Applied(members_changed=True, placement_changed=True, revoked=revoked))
                return
        raise EtcdError(f"mirror resync: history compacted under {_MAX_RESYNC_RESTARTS} reads")

    async def run(self) -> None:
        """Follow etcd until cancelled. The caller did one :meth:`resync` (or has a stored
        view) first."""
        while True:
            watch = self._watch = self._etcd.watch_prefix(self._keys.root, self.view.revision + 1)
            try:
                async for batch in watch:
                    self.applied_at = time.monotonic()
                    self._commit(self.view.apply(self._keys, batch.events, batch.revision))
            except Compacted as exc:
                log.warning("mirror: %s; full resync", exc)
                await self._resync_until_done()
            finally:
                self._watch = None
                await watch.aclose()

    async def _resync_until_done(self) -> None:
        for attempt in range(1_000_000):  # bounded by cancellation in practice
            try:
                await self.resync()
                return
            except EtcdUnavailable as exc:
                log.warning("mirror resync: %s", exc)
                await asyncio.sleep(min(2.0, 0.1 * (attempt + 1)))

    def _commit(self, applied: Applied) -> None:
        """Accounts first, then the revision: a crash in between replays the batch, and
        replaying is idempotent. The whole view (placement is tens of KB) is rewritten only
        when something but accounts changed; otherwise just the revision (8 bytes)."""
        for account in applied.accounts:
            self._insert_account(account.handle, account.account)
        for seen in applied.states:
            keep_newer_state(self._store, seen.handle, seen.state)
        for problem in applied.ignored:
            log.warning("mirror: ignored %s", problem)
        if applied.revoked:
            self._store.update_revocations(applied.revoked)
        if applied.structural:
            self._store.put_meta(VIEW_META, self.view.to_bytes())
        self._store.put_meta(REVISION_META, _U64.pack(self.view.revision))
        self._on_change(applied)

    def _insert_account(self, handle: str, raw: bytes) -> None:
        """Idempotent: an account already here (created through this node) is kept. ``raw``:
        etcd's value, as the store keeps it (``AccountRecord``: with the creation
        signature, or a bare Account created before signatures were kept)."""
        try:
            stored = AccountRecord.decode(raw)
            account = pb.Account.FromString(stored.account)
        except Exception:
            log.warning("mirror: /accounts/%s holds no Account; ignored", handle)
            return
        terms = (
            search.index_terms(account.handle, account.display_name) if account.discoverable else []
        )
        self._store.insert_account(handle, stored, terms)
