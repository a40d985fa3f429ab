"""A cluster's revocations: one etcd key per Logout or RevokeSessions, under a lease of its
own that ends when every token the entry covers has expired, so etcd forgets it by itself.

Nothing reaches etcd per token check: every node's mirror (``supernode.cluster.mirror``)
follows ``/revoked/`` into :class:`supernode.revocations.Revocations`, which checks cost two
dict lookups. How soon another node refuses a revoked token is how soon its mirror applies
the key: the write is acknowledged by etcd before Logout returns, and the watch delivers it
to every connected member in milliseconds (README "Sessions" states the bound). A node cut
off from etcd learns of it when its watch resumes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from supernode.cluster.etcd import EtcdClient, EtcdUnavailable
from supernode.cluster.keys import Keys
from supernode.cluster.view import ClusterView
from supernode.errors import Reason, Unavailable
from supernode.revocations import Revocation, Revocations


class ClusterRevocations:
    """The :class:`supernode.revocations.RevocationSink` of a cluster member."""

    def __init__(
        self,
        etcd: EtcdClient,
        keys: Keys,
        view: ClusterView,
        revocations: Revocations,
        clock_ms: Callable[[], int],
    ) -> None:
        self._etcd = etcd
        self._keys = keys
        self._view = view
        self._revocations = revocations
        self._clock_ms = clock_ms

    async def publish(self, revocation: Revocation) -> None:
        # Refused here at once, whatever etcd says; in the view too, so a mirror batch that
        # arrives before this key's own event does not drop it again.
        self._view.revoked[revocation.name] = revocation.value
        self._revocations.add(revocation)
        ttl = max(1, math.ceil((revocation.until_ms - self._clock_ms()) / 1000))
        try:
            lease = await self._etcd.grant_lease(ttl)
            await self._etcd.put(self._keys.revocation(revocation.name), revocation.value, lease)
        except EtcdUnavailable as exc:
            raise Unavailable(
                "sessions: the cluster's coordination store is unreachable, so the other "
                "nodes cannot learn of this revocation yet; retry",
                reason=Reason.NOT_READY,
            ) from exc
